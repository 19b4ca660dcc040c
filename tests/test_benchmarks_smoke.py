"""The benchmark script keeps working: a quick run prints its tables and writes its JSON.

Nothing here looks at a timing: benchmarks are never timed tests. Peers that are
not installed (the ``bench`` extra) simply come out as "n/a" rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"


@pytest.mark.skipif(not SCRIPT.exists(), reason="benchmarks/ is not part of this checkout")
def test_quick_run_prints_tables_and_writes_json(tmp_path: Path) -> None:
    pytest.importorskip("openai")  # the ChatCompletion variant needs the SDK's types
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "memory,disk,import", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = done.stdout
    assert "### Targets (ChatCompletion results)" in text
    assert "### Hit latency, ChatCompletion result" in text
    assert "### Hit latency, str result" in text
    assert "### Miss overhead" in text
    assert "| memory | llm_memo |" in text
    assert "| disk | llm_memo |" in text

    document = json.loads(out.read_text())
    assert document["errors"] == []
    assert document["plan"]["quick"] is True
    rows = document["rows"]
    for variant in ("ChatCompletion", "str"):
        for group in ("memory", "disk"):
            measured = [
                r
                for r in rows
                if r["section"] == "hit"
                and r["variant"] == variant
                and r["group"] == group
                and r["status"] == "ok"
            ]
            kinds = {r["kind"] for r in measured}
            assert {"llm_memo", "bound"} <= kinds, (variant, group, kinds)
            for row in measured:
                assert row["median_us"] > 0 and row["p99_us"] >= row["median_us"] * 0.999
                assert row["fresh"] in (True, False)
    memo_rows = [r for r in rows if r["section"] == "hit" and r.get("kind") == "llm_memo"]
    assert all(r["fresh"] for r in memo_rows)  # llm_memo always returns a fresh object
    misses = [r for r in rows if r["section"] == "miss" and r["status"] == "ok"]
    assert {r["group"] for r in misses} >= {"memory", "disk"}
    (imp,) = [r for r in rows if r["section"] == "import" and r["label"] == "import llm_memo"]
    assert "forbidden_loaded" in imp
    names = {t["name"] for t in document["targets"]}
    assert "memory hit ÷ its lower bound" in names
