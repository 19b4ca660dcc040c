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
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--only",
            "memory,disk,cold,seed,size,import",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only: the machine running it may be busy
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = done.stdout
    assert "### Targets (ChatCompletion results)" in text
    assert "### Hit latency, chat call, ChatCompletion result" in text
    assert "### Hit latency, chat call, str result" in text
    assert "### Hit latency, tool-calling conversation, ChatCompletion result" in text
    assert "### Miss overhead" in text
    assert "| memory | llm_memo |" in text
    assert "| disk | llm_memo |" in text

    document = json.loads(out.read_text())
    assert document["errors"] == []
    assert document["plan"]["quick"] is True
    rows = document["rows"]
    for workload, variant in (("chat", "ChatCompletion"), ("chat", "str"), ("tools", "ChatCompletion")):
        for group in ("memory", "disk"):
            measured = [
                r
                for r in rows
                if r["section"] == "hit"
                and r["workload"] == workload
                and r["variant"] == variant
                and r["group"] == group
                and r["status"] == "ok"
            ]
            kinds = {r["kind"] for r in measured}
            assert {"llm_memo", "bound"} <= kinds, (workload, variant, group, kinds)
            for row in measured:
                assert row["median_us"] > 0 and row["p99_us"] >= row["median_us"] * 0.999
                assert row["fresh"] in (True, False)
    memo_rows = [r for r in rows if r["section"] == "hit" and r.get("kind") == "llm_memo"]
    assert all(r["fresh"] for r in memo_rows)  # llm_memo always returns a fresh object
    misses = [r for r in rows if r["section"] == "miss" and r["status"] == "ok"]
    assert {(r["workload"], r["group"]) for r in misses} >= {
        (w, g) for w in ("chat", "tools") for g in ("memory", "disk")
    }
    (imp,) = [r for r in rows if r["section"] == "import" and r["label"] == "import llm_memo"]
    assert "forbidden_loaded" in imp
    assert [r for r in rows if r["section"] == "import" and r["label"] == "import wrapt"]
    targets = {t["name"]: t for t in document["targets"]}
    assert targets["chat call: memory warm hit ÷ its lower bound"]["measured"] is not None
    assert targets["tool-calling conversation: disk miss overhead ÷ its lower bound"]["measured"] is not None
    assert "start-up: import + first @llm_cached minus import wrapt, ÷ 15 ms" in targets
    assert "| target | measured | goal | result |" in text
    # The newer sections ran (or say why not: a peer or redis-server may be missing).
    for section in ("cold", "seed", "size"):
        assert [r for r in rows if r["section"] == section], section
    cold = {
        (r["workload"], r["group"], r["kind"]) for r in rows if r["section"] == "cold" and r["status"] == "ok"
    }
    assert {("chat", "memory", "llm_memo"), ("tools", "disk", "bound")} <= cold
