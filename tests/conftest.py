"""Shared fixtures: one real local stack (Kafka KRaft + Apicurio registry) per test session.

The stack is started by the tests themselves (no service is assumed running), with
its jars cached under <repo>/.stack/cache so only the first run on a machine
downloads them. Data lives in a temporary directory.
"""
from __future__ import annotations

import uuid

import pytest

from practiceflow.localstack.stack import LocalStack
from practiceflow.settings import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    st = LocalStack(tmp_path_factory.mktemp("stack"), cache_dir=REPO_ROOT / ".stack" / "cache")
    info = st.start()
    yield info
    st.stop()


@pytest.fixture
def cfg(tmp_path) -> Settings:
    return Settings(state_dir=tmp_path, topic_prefix=f"t{uuid.uuid4().hex[:6]}", topic_partitions=3,
                    consumer_group=f"test-{uuid.uuid4().hex[:8]}")
