"""Content-addressed store for original documents (faxes): a local folder or S3.

The key is the SHA-256 of the bytes, so storing the same fax twice is a no-op and a
record's ``storage_uri`` proves which bytes it was made from; reads check the bytes
against that hash again. Layout, the same in both back-ends:
``<root>/<practice>/<sha[:2]>/<sha>``.

* ``file:///abs/path`` - :class:`LocalDocumentStore` (the embedded default).
* ``s3://bucket/prefix`` - :class:`S3DocumentStore`, through boto3, for AWS S3 or any
  S3-compatible server (MinIO, Ceph RGW, ...: set ``endpoint_url``). Credentials come
  from boto3's usual chain (environment, profile, IRSA / instance role); none are kept
  in practiceflow's settings. Writes send the SHA-256 so the server can verify the
  upload, use ``If-None-Match: *`` so an existing object is never rewritten, and can
  ask for server-side encryption (``sse``), which a store of PHI should.

Reads take the practice that asks: the object must lie under that practice's prefix
(``<root>/<practice>/``), checked after resolving the path (local: symlinks and ``..``
included), so a uri of another tenant's document is refused with PermissionError.

A store that cannot be reached raises :class:`DocumentStoreUnavailable`; the gateways
turn that into "retry later" (HTTP 503, file left in the inbox), never a lost document.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

__all__ = ["DocumentStore", "DocumentStoreUnavailable", "LocalDocumentStore", "S3DocumentStore", "open_document_store"]


class DocumentStoreUnavailable(RuntimeError):
    """The store did not confirm the write or read; nothing was lost, try again later."""


class DocumentStore(Protocol):
    def put(self, data: bytes, practice_id: str, suffix: str = "") -> tuple[str, str]:
        """Store once; returns (sha256 hex, uri)."""

    def get(self, uri: str, practice_id: str) -> bytes:
        """The bytes behind a uri this store returned for ``practice_id`` (checked against their hash).

        Raises PermissionError when the uri names another practice's document: a caller
        authenticated as one practice never reads another's, whatever uri it presents.
        """


def _relative_key(digest: str, practice_id: str, suffix: str) -> str:
    if not practice_id or "/" in practice_id or practice_id in (".", ".."):
        raise ValueError(f"practice id {practice_id!r} cannot name a folder")
    return f"{practice_id}/{digest[:2]}/{digest}{suffix}"


def _checked(data: bytes, name: str) -> bytes:
    """The object's name starts with the SHA-256 of what it must hold."""
    digest = name.rsplit("/", 1)[-1][:64]
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"document {name!r}: content does not match its SHA-256 name")
    return data


class LocalDocumentStore:
    def __init__(self, uri: str) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"not a file:// uri: {uri!r}")
        self.root = Path(parsed.path)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, practice_id: str, suffix: str = "") -> tuple[str, str]:
        """Writes via a temp file so readers never see half a file."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / _relative_key(digest, practice_id, suffix)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # a temp file of its own per call: puts of the same bytes may run at once
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{digest[:16]}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
        except OSError as e:
            raise DocumentStoreUnavailable(f"local document store: {type(e).__name__}") from e
        return digest, path.resolve().as_uri()

    def get(self, uri: str, practice_id: str) -> bytes:
        path = Path(urlparse(uri).path).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("uri outside this document store")
        tenant = (self.root / _relative_key("0" * 64, practice_id, "")).parent.parent.resolve()
        if tenant not in path.parents:
            raise PermissionError("document belongs to another practice")
        return _checked(path.read_bytes(), path.name)


class S3DocumentStore:
    def __init__(
        self,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        sse: str | None = None,
        client: Any = None,
    ) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket[/prefix] uri: {uri!r}")
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.sse = sse
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                # a sender waits for our answer: fail fast into "retry later"
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=3,
                    read_timeout=20,
                    max_pool_connections=16,
                ),
            )
        self.client = client

    def put(self, data: bytes, practice_id: str, suffix: str = "") -> tuple[str, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        raw = hashlib.sha256(data)
        digest = raw.hexdigest()
        key = self.prefix + _relative_key(digest, practice_id, suffix)
        extra: dict[str, Any] = {}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                IfNoneMatch="*",
                ChecksumSHA256=base64.b64encode(raw.digest()).decode("ascii"),
                Metadata={"sha256": digest, "practice-id": practice_id},
                **extra,
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # 412: the object exists (same name = same bytes), nothing to do. 409: another
            # conditional write of it is in flight and may still fail: only an object we
            # can see counts as stored.
            if not (code == "PreconditionFailed" or status == 412 or (status == 409 and self._exists(key))):
                raise DocumentStoreUnavailable(f"s3://{self.bucket}/{key}: {code or status}") from e
        except BotoCoreError as e:
            raise DocumentStoreUnavailable(f"s3://{self.bucket}: {type(e).__name__}") from e
        return digest, f"s3://{self.bucket}/{key}"

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except (ClientError, BotoCoreError):
            return False

    def get(self, uri: str, practice_id: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not key.startswith(self.prefix) or ".." in key:
            raise ValueError("uri outside this document store")
        tenant = self.prefix + _relative_key("0" * 64, practice_id, "").split("/", 1)[0] + "/"
        if not key.startswith(tenant) or "//" in key:
            raise PermissionError("document belongs to another practice")
        try:
            data = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(uri) from e
            raise DocumentStoreUnavailable(f"{uri}: {e.response.get('Error', {}).get('Code')}") from e
        except BotoCoreError as e:
            raise DocumentStoreUnavailable(f"{uri}: {type(e).__name__}") from e
        return _checked(data, key)


def open_document_store(
    uri: str, *, endpoint_url: str | None = None, region: str | None = None, sse: str | None = None
) -> DocumentStore:
    """The store a ``document_store`` setting names (``file://`` or ``s3://``)."""
    scheme = urlparse(uri).scheme
    if scheme == "file":
        return LocalDocumentStore(uri)
    if scheme == "s3":
        return S3DocumentStore(uri, endpoint_url=endpoint_url, region=region, sse=sse)
    raise ValueError(f"document store {uri!r}: use file:///path or s3://bucket/prefix")
