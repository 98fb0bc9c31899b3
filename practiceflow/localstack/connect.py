"""Find the Kafka and registry endpoints a command should use.

Configured endpoints (production) win; otherwise the stack that ``practiceflow stack
up`` recorded; otherwise, when allowed, a fresh embedded stack is started for the
duration of the command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from practiceflow.localstack.stack import LocalStack, read_state
from practiceflow.settings import Settings


@dataclass
class Endpoints:
    bootstrap: str
    registry_url: str
    started_here: bool
    kafka_version: str | None = None
    cold_start_seconds: float | None = None


@contextlib.contextmanager
def endpoints(cfg: Settings, *, autostart: bool = True, nodes: int = 1) -> Iterator[Endpoints]:
    if cfg.kafka_bootstrap:
        yield Endpoints(cfg.kafka_bootstrap, cfg.schema_registry_url or "mock://", False)
        return
    info = read_state(cfg.state_dir)
    if info is not None:
        yield Endpoints(info.bootstrap, cfg.schema_registry_url or info.registry_url, False, info.kafka_version)
        return
    if not autostart:
        raise RuntimeError("no Kafka configured and no local stack running: run `practiceflow stack up`")
    stack = LocalStack(cfg.state_dir, nodes=nodes)
    info = stack.start()
    try:
        yield Endpoints(
            info.bootstrap,
            cfg.schema_registry_url or info.registry_url,
            True,
            info.kafka_version,
            info.cold_start_seconds,
        )
    finally:
        stack.stop()
