"""The content-addressed document store: a local folder and S3 (over the real S3 REST API)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from practiceflow.sinks.docstore import (
    DocumentStoreUnavailable,
    LocalDocumentStore,
    S3DocumentStore,
    open_document_store,
)
from tests.fixtures import closed_port

FAX = b"%PDF-1.4 a fax page for the store"
SHA = hashlib.sha256(FAX).hexdigest()


def test_s3_put_is_content_addressed_idempotent_and_per_practice(s3_endpoint, s3_bucket):
    store = open_document_store(f"s3://{s3_bucket}/originals", endpoint_url=s3_endpoint)
    assert isinstance(store, S3DocumentStore)
    sha, uri = store.put(FAX, "clinic-a")
    assert sha == SHA
    assert uri == f"s3://{s3_bucket}/originals/clinic-a/{SHA[:2]}/{SHA}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    key = uri.split(f"s3://{s3_bucket}/", 1)[1]
    first = s3.head_object(Bucket=s3_bucket, Key=key)
    assert first["Metadata"] == {"sha256": SHA, "practice-id": "clinic-a"}

    # a resend is a no-op: the existing object (marked here) is not rewritten
    s3.put_object(Bucket=s3_bucket, Key=key, Body=FAX, Metadata={"sha256": SHA, "marker": "original"})
    assert store.put(FAX, "clinic-a") == (sha, uri)
    assert s3.head_object(Bucket=s3_bucket, Key=key)["Metadata"] == {"sha256": SHA, "marker": "original"}
    _, other = store.put(FAX, "clinic-b")  # the same bytes from another practice stay that practice's
    assert other != uri and "/clinic-b/" in other
    assert store.get(uri, "clinic-a") == FAX
    listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted([key, other.split(f"{s3_bucket}/", 1)[1]])


def test_s3_read_checks_the_bytes_and_the_boundary(s3_endpoint, s3_bucket):
    store = S3DocumentStore(f"s3://{s3_bucket}", endpoint_url=s3_endpoint)
    _, uri = store.put(FAX, "clinic-a")
    key = uri.split(f"s3://{s3_bucket}/", 1)[1]
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=s3_bucket, Key=key, Body=b"%PDF altered")
    with pytest.raises(ValueError, match="does not match"):
        store.get(uri, "clinic-a")
    with pytest.raises(ValueError, match="outside"):
        store.get(f"s3://another-bucket/{key}", "clinic-a")
    with pytest.raises(FileNotFoundError):
        store.get(f"s3://{s3_bucket}/clinic-a/00/{'0' * 64}", "clinic-a")
    with pytest.raises(ValueError):
        store.put(FAX, "../clinic-b")


def test_s3_a_practice_cannot_read_another_practices_document(s3_endpoint, s3_bucket):
    store = S3DocumentStore(f"s3://{s3_bucket}/docs", endpoint_url=s3_endpoint)
    _, uri_b = store.put(FAX, "clinic-b")
    assert store.get(uri_b, "clinic-b") == FAX
    for asking in ("clinic-a", "clinic", "clinic-b/..", ""):
        with pytest.raises((PermissionError, ValueError)):
            store.get(uri_b, asking)
    # a key crafted to start with the asking practice's prefix but climb out of it
    with pytest.raises((PermissionError, ValueError)):
        store.get(uri_b.replace("/docs/clinic-b/", "/docs/clinic-a/../clinic-b/"), "clinic-a")


def test_s3_server_side_encryption_is_requested(s3_endpoint, s3_bucket):
    store = S3DocumentStore(f"s3://{s3_bucket}/enc", endpoint_url=s3_endpoint, sse="AES256")
    _, uri = store.put(FAX, "clinic-a")
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(
        Bucket=s3_bucket, Key=uri.split(f"s3://{s3_bucket}/", 1)[1]
    )
    assert head["ServerSideEncryption"] == "AES256"


def test_s3_unreachable_is_unavailable_not_a_crash(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    store = S3DocumentStore("s3://pf-docs-down", client=client)
    with pytest.raises(DocumentStoreUnavailable):
        store.put(FAX, "clinic-a")
    with pytest.raises(DocumentStoreUnavailable):
        store.get(f"s3://pf-docs-down/clinic-a/{SHA[:2]}/{SHA}", "clinic-a")


def test_local_store_same_contract(tmp_path: Path):
    store = open_document_store((tmp_path / "docs").as_uri())
    assert isinstance(store, LocalDocumentStore)
    sha, uri = store.put(FAX, "clinic-a")
    assert sha == SHA and uri.endswith(f"/clinic-a/{SHA[:2]}/{SHA}")
    assert store.put(FAX, "clinic-a") == (sha, uri)
    assert store.get(uri, "clinic-a") == FAX
    Path(uri.removeprefix("file://")).write_bytes(b"%PDF altered")
    with pytest.raises(ValueError, match="does not match"):
        store.get(uri, "clinic-a")
    with pytest.raises(ValueError, match="outside"):
        store.get((tmp_path / "elsewhere").as_uri(), "clinic-a")
    with pytest.raises(ValueError):
        open_document_store("https://example.org/bucket")


def test_local_a_practice_cannot_read_another_practices_document(tmp_path: Path):
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    _, uri_b = store.put(FAX, "clinic-b")
    assert store.get(uri_b, "clinic-b") == FAX
    with pytest.raises(PermissionError):
        store.get(uri_b, "clinic-a")
    with pytest.raises(PermissionError):  # ".." inside the uri does not climb into B either
        store.get(uri_b.replace("/clinic-b/", "/clinic-a/../clinic-b/"), "clinic-a")
    # a symlink inside A's folder that points at B's document is resolved, then refused
    link_dir = tmp_path / "docs" / "clinic-a" / "zz"
    link_dir.mkdir(parents=True)
    (link_dir / SHA).symlink_to(Path(uri_b.removeprefix("file://")))
    with pytest.raises(PermissionError):
        store.get((link_dir / SHA).as_uri(), "clinic-a")
    with pytest.raises(ValueError):
        store.get(uri_b, "../clinic-b")


def test_s3_concurrent_write_conflict_counts_only_when_the_object_is_there():
    """409 ConditionalRequestConflict: another write of this key is in flight and may fail."""
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    store = S3DocumentStore("s3://pf-docs", client=client)
    with Stubber(client) as stub:
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stub.add_response("head_object", {"ContentLength": len(FAX)})
        assert store.put(FAX, "clinic-a")[0] == SHA
        stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stub.add_client_error("head_object", "404", http_status_code=404)
        with pytest.raises(DocumentStoreUnavailable):
            store.put(FAX, "clinic-a")
        stub.add_client_error("put_object", "AccessDenied", http_status_code=403)
        with pytest.raises(DocumentStoreUnavailable):
            store.put(FAX, "clinic-a")


def test_local_concurrent_puts_of_the_same_document(tmp_path: Path):
    store = LocalDocumentStore((tmp_path / "docs").as_uri())
    big = b"%PDF" + bytes(range(256)) * 16384  # 4 MiB
    errors: list[BaseException] = []
    uris: list[str] = []

    def put() -> None:
        try:
            uris.append(store.put(big, "clinic-a")[1])
        except BaseException as e:
            errors.append(e)

    for _ in range(5):
        threads = [threading.Thread(target=put) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(set(uris)) == 1
    assert store.get(uris[0], "clinic-a") == big
    assert [p.name for p in Path(uris[0].removeprefix("file://")).parent.iterdir()] == [Path(uris[0]).name]
