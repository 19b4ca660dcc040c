"""Start-up hook of ``llm-memo run``: cache the LLM SDKs, then run any other sitecustomize.

``llm-memo run`` puts this directory first on ``PYTHONPATH``, so Python imports
this module at start-up instead of the environment's own ``sitecustomize``, which
is then looked up further along ``sys.path`` and run in its place. Anything going
wrong here is reported on stderr and the program runs uncached: the cache must
never be the reason a program does not start.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys


def _patch() -> None:
    try:
        from llm_memo import _bootstrap
    except Exception as exc:  # e.g. a different interpreter, without llm_memo installed
        print(f"llm-memo run: cannot import llm_memo here ({exc}); running uncached", file=sys.stderr)
        return
    try:
        _bootstrap.start()
    except Exception as exc:
        print(
            f"llm-memo run: patching failed ({type(exc).__name__}: {exc}); running uncached", file=sys.stderr
        )


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module  # as if Python had found it first
    spec.loader.exec_module(module)


_patch()
_chain()
