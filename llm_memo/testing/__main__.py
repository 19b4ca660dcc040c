"""``python -m llm_memo.testing [--port 8000] [--latency 1.0] [--quiet]``: serve the fake API."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    main()
