"""What the broker latency benches share (``bench_refill_latency.py``, ``bench_denials_latency.py``):
a throwaway local stack with one worker's settings, the latency quantiles, and the command line.

Why a module: both measure "input on a raw topic -> work item on ``handoff``" the same way; only
what they send and how they pair an input with its item differ.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from practiceflow.localstack.stack import LocalStack
from practiceflow.settings import REPO_ROOT, Settings

Bench = Callable[[Settings, str, str, float, float], Awaitable[dict[str, Any]]]


def run_on_local_stack(bench: Bench, rate: float, seconds: float) -> dict[str, Any]:
    """Start a local stack (Kafka + registry) in a temporary folder, run ``bench(cfg, bootstrap,
    registry, rate, seconds)`` with fresh topic and group names, stop the stack."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp) / "stack", cache_dir=REPO_ROOT / ".stack" / "cache")
        info = stack.start()
        try:
            cfg = Settings(
                state_dir=Path(tmp),
                topic_prefix=f"b{uuid.uuid4().hex[:6]}",
                consumer_group=f"bench-{uuid.uuid4().hex[:8]}",
            )
            return asyncio.run(bench(cfg, info.bootstrap, info.registry_url, rate, seconds))
        finally:
            stack.stop()


def quantiles_ms(values: list[float]) -> dict[str, float | None]:
    """p50 / p90 / p99 / max of latencies in ms (None where too few to tell)."""
    if len(values) < 2:
        return {"p50_ms": values[0] if values else None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "p99_ms": round(q[98], 1), "max_ms": max(values)}


def rate_and_seconds(default_rate: float, default_seconds: float) -> tuple[float, float]:
    """``--rate R --seconds S`` from the command line, else the defaults."""
    argv = sys.argv
    rate = float(argv[argv.index("--rate") + 1]) if "--rate" in argv else default_rate
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else default_seconds
    return rate, seconds
