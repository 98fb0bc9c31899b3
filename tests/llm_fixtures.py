"""The local OpenAI-compatible server (practiceflow/localstack/llm_server.py) as a pytest fixture."""

from __future__ import annotations

import httpx
import pytest

from practiceflow.localstack.llm_server import LocalLLMServer
from practiceflow.processors.llm.config import LLMSettings


@pytest.fixture(scope="session")
def llm_server():
    with LocalLLMServer() as server:
        yield server


def set_mode(server: LocalLLMServer, mode: str = "normal", **kw) -> dict:
    """Switch the server's mode and reset its counters; returns its state."""
    r = httpx.put(f"{server.origin}/_control", json={"mode": mode, "reset_counts": True, **kw}, timeout=5)
    r.raise_for_status()
    return r.json()


def server_state(server: LocalLLMServer) -> dict:
    return httpx.get(f"{server.origin}/_control", timeout=5).json()


def llm_settings(server: LocalLLMServer, **kw) -> LLMSettings:
    """Settings that allow exactly the local server, with test-sized timeouts and backoff."""
    base = {
        "base_url": server.base_url,
        "allowed_endpoints": [server.origin],
        "timeout_s": 5.0,
        "deadline_s": 10.0,
        "backoff_s": 0.05,
        "backoff_max_s": 0.2,
    }
    base.update(kw)
    return LLMSettings(**base)
