"""Webhook replay protection: ids seen per feed and practice, for as long as a signature is valid.

A signed webhook may be replayed by whoever saw it until its timestamp leaves the
tolerance window. The old guard was one in-memory set of 10,000 ids shared by every
feed: 10,050 HL7 messages later, the same signed portal webhook was accepted again, and
a gateway restart forgot everything. This guard:

* keeps one table per ``(feed, practice)``, so no feed or tenant can push another's
  ids out;
* forgets an id when its signature can no longer be valid (``signed_at + window``),
  which sizes the table to the window instead of a count;
* survives a restart through an append-only file in the state directory (one JSON
  line per id, compacted on start). Rebuilding from the raw topic on start was the
  alternative; it needs a consumer, a scan of up to a window of every partition and a
  broker that is up before the gateway answers, for the same five minutes of ids. A
  small local file is simpler and correct for a gateway that keeps its state directory.
  Several gateway instances behind one balancer do not share it; the worker's de-dup
  table (keyed by the same event id) still counts such a replay as a duplicate.

Ids are stored as SHA-256 digests (a webhook id is not PHI, but nothing here needs it
in clear).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

__all__ = ["ReplayGuard"]

log = logging.getLogger("practiceflow.gateway.replay")


def _digest(message_id: str) -> str:
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()


class ReplayGuard:
    """Ids accepted lately, per (feed, practice), each until its expiry; optionally persisted."""

    def __init__(self, path: Path | None, *, max_per_table: int = 200_000) -> None:
        self.path = path
        self.max_per_table = max_per_table
        self._tables: dict[tuple[str, str], dict[str, float]] = {}
        self._lines = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._load()

    def seen(self, feed: str, practice_id: str, message_id: str, now_s: float) -> bool:
        """Whether this id was accepted for this feed and practice and has not expired yet."""
        exp = self._tables.get((feed, practice_id), {}).get(_digest(message_id))
        return exp is not None and exp > now_s

    def remember(self, feed: str, practice_id: str, message_id: str, expires_s: float, now_s: float) -> None:
        """Remember an accepted id until ``expires_s`` (the end of its signature's validity)."""
        table = self._tables.setdefault((feed, practice_id), {})
        self._expire(table, now_s)
        if len(table) >= self.max_per_table:  # only a flood inside one window gets here
            log.warning("replay table %s/%s full; forgetting its oldest id", feed, practice_id)
            table.pop(next(iter(table)))
        digest = _digest(message_id)
        table[digest] = expires_s
        if self.path is not None:
            line = json.dumps({"f": feed, "p": practice_id, "i": digest, "e": expires_s}) + "\n"
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._lines += 1
            if self._lines > 2 * max(1000, self._live()):
                self._compact(now_s)

    @staticmethod
    def _expire(table: dict[str, float], now_s: float) -> None:
        for digest in [d for d, exp in table.items() if exp <= now_s]:
            del table[digest]

    def _live(self) -> int:
        return sum(len(t) for t in self._tables.values())

    def _load(self) -> None:
        if self.path is None:  # only called for a file-backed table
            raise RuntimeError("replay table has no file")
        now_s = time.time()
        if self.path.exists():
            for raw in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(raw)
                    if float(row["e"]) > now_s:
                        self._tables.setdefault((str(row["f"]), str(row["p"])), {})[str(row["i"])] = float(row["e"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line after a crash: skip it
        self._compact(now_s)

    def _compact(self, now_s: float) -> None:
        """Rewrite the file with the live ids only (atomic replace)."""
        if self.path is None:  # only called for a file-backed table
            raise RuntimeError("replay table has no file")
        for table in self._tables.values():
            self._expire(table, now_s)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for (feed, practice), table in self._tables.items():
                f.writelines(
                    json.dumps({"f": feed, "p": practice, "i": digest, "e": exp}) + "\n"
                    for digest, exp in table.items()
                )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self._lines = self._live()
