"""Shared fixtures: one real local stack (Kafka KRaft + Apicurio registry) per test session.

The stack is started by the tests themselves (no service is assumed running), with
its jars cached under <repo>/.stack/cache so only the first run on a machine
downloads them. Data lives in a temporary directory.
"""

from __future__ import annotations

import uuid

import pytest

from practiceflow.localstack.ports import free_port
from practiceflow.localstack.stack import LocalStack
from practiceflow.settings import REPO_ROOT, Settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    st = LocalStack(tmp_path_factory.mktemp("stack"), cache_dir=REPO_ROOT / ".stack" / "cache")
    info = st.start()
    yield info
    st.stop()


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory):
    """A real FHIR R4 server (HAPI FHIR, in memory, auth off) for the EHR write-back tests;
    started once per session like the stack (jars cached under <repo>/.stack/cache)."""
    from practiceflow.localstack.fhir_server import FhirServerProcess

    server = FhirServerProcess(REPO_ROOT / ".stack" / "cache", log_file=tmp_path_factory.mktemp("fhir") / "fhir.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cfg(tmp_path) -> Settings:
    return Settings(
        state_dir=tmp_path,
        topic_prefix=f"t{uuid.uuid4().hex[:6]}",
        topic_partitions=3,
        consumer_group=f"test-{uuid.uuid4().hex[:8]}",
        clearinghouse="simulator",  # the tests' checks go to the local simulator (the default is none)
        clearinghouse_sim_port=free_port(),  # each test's own clearinghouse simulator, if it starts one
    )


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 REST endpoint on loopback (moto's server), for the S3 document store.

    boto3 talks HTTP to it exactly as to AWS S3 or MinIO; moto keeps the objects in memory.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch) -> str:
    """A fresh bucket on the loopback S3 endpoint; returns its name. Test credentials only."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"pf-docs-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
