"""The second process of ``llm-memo demo``: one call through the disk cache, reported as JSON.

Run only as ``python -m llm_memo.cli._demo_child --child --dir DIR [--base-url URL]``
(nothing imports it, so running it as ``__main__`` never loads it twice).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ._demo_calls import client, measure_chat, patch

__all__ = ["child_main"]


def child_main(argv: list[str]) -> int:
    """One call, a JSON report on stdout."""
    parser = argparse.ArgumentParser(prog="python -m llm_memo.cli._demo_child")
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--base-url")
    args = parser.parse_args(argv)

    import llm_memo

    patch(Path(args.dir))
    with llm_memo.mode("readwrite"), client(args.base_url) as openai_client:
        outcome = measure_chat(openai_client, "second process")
    print(json.dumps({**outcome.to_json(), "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
