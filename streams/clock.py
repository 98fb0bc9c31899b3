"""Wall-clock time for the streaming shell (processors/ never read a clock)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
