"""The ``llm_memo`` logger and its rate-limited warnings.

A dead Redis or a locked database would otherwise log once per call; here each
distinct problem logs at most once per ``WARN_INTERVAL`` seconds, with a count of
what was held back.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["WARN_INTERVAL", "log", "warn_limited"]

log = logging.getLogger("llm_memo")

WARN_INTERVAL = 60.0

_last: dict[str, tuple[float, int]] = {}
_lock = threading.Lock()


def warn_limited(topic: str, message: str, *args: object) -> bool:
    """Log a warning unless ``topic`` was logged in the last WARN_INTERVAL seconds."""
    now = time.monotonic()
    with _lock:
        last, held = _last.get(topic, (-WARN_INTERVAL, 0))
        if now - last < WARN_INTERVAL:
            _last[topic] = (last, held + 1)
            return False
        _last[topic] = (now, 0)
    if held:
        message += " (%d similar warnings suppressed)"
        args = (*args, held)
    log.warning(message, *args)
    return True


def _reset_for_tests() -> None:
    with _lock:
        _last.clear()
