"""``python -m llm_memo.cli ...`` is the ``llm-memo`` command."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
