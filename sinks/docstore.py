"""Content-addressed store for original documents (faxes).

The key is the SHA-256 of the bytes, so storing the same fax twice is a no-op and
a record's ``storage_uri`` proves which bytes it was made from. Only ``file://``
is implemented; an S3-compatible store is the production target and is not built
yet (see README).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse


class DocumentStore:
    def __init__(self, uri: str) -> None:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"document store {uri!r}: only file:// is implemented")
        self.root = Path(parsed.path)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, practice_id: str, suffix: str = "") -> tuple[str, str]:
        """Store once; returns (sha256, uri). Writes via a temp file so readers never see half a file."""
        digest = hashlib.sha256(data).hexdigest()
        folder = self.root / practice_id / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}{suffix}"
        if not path.exists():
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return digest, path.resolve().as_uri()

    def get(self, uri: str) -> bytes:
        path = Path(urlparse(uri).path).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("uri outside this document store")
        return path.read_bytes()
