"""Versioned ClickHouse schema migrations, applied in order when a sink starts.

Why a small runner of our own: the maintained Python tool (``clickhouse-migrations`` on
PyPI) talks ClickHouse's native TCP protocol through ``clickhouse-driver``, which the
embedded default (chdb) does not serve; this runner uses the sink's own
clickhouse-connect client, so the same files apply to chdb and to a server.

A migration is one file in this package, ``NNNN_<name>.sql`` or ``NNNN_<name>.py``:

* ``.sql``: statements separated by ``;`` at the end of a line; ``{db}`` is replaced by
  the database name. Write them re-runnable (``IF NOT EXISTS``): a crash after some
  statements re-runs the whole file at the next start.
* ``.py``: a module with ``migrate(ctx: MigrationContext) -> None`` for what SQL alone
  cannot say (set a table aside and copy its rows into a re-keyed or re-partitioned one).

Applied versions are rows of ``{db}.schema_migrations`` (version, name, checksum, time);
a version is recorded only after all of its statements succeeded, so the runner is
idempotent across crashes and restarts. A file changed after it was applied is not
applied again (its checksum differs: logged as a warning): fix forward with a new file.
A ``.py`` migration whose docstring or comments were corrected after it landed lists its
earlier checksums in ``AMENDED_FROM`` (checksum -> what changed); a database that recorded one
of them counts as having this file. Statements are amended only where a database that finished
the earlier text is left as the new text would leave it (s19 M3: 0002/0007 stopped TRUNCATEing).
One process migrates at a time: with chdb that is given (one process per path); against a
server the sink takes ``{db}.schema_migrations_lock`` (``apply_migrations(lock=True)``).

Retention is not a migration: ``apply_retention`` sets each table's TTL from the settings
at every start (``ALTER TABLE ... MODIFY TTL`` only when it differs), so changing
``clickhouse_audit_retention_days`` needs no new file. Tables with a TTL are listed in
``RETENTION``; add yours there.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

log = logging.getLogger("practiceflow.clickhouse.migrations")

_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?\n|;[ \t]*\Z")

# table -> (time column of the TTL, which retention setting: "audit" or "records")
RETENTION: dict[str, tuple[str, str]] = {
    "audit_events": ("at", "audit"),
    "records": ("written_at", "records"),
    "observations": ("written_at", "records"),
    "immunizations": ("written_at", "records"),
    "fax_classifications": ("written_at", "records"),
    "handoff_items": ("created_at", "records"),
    "dead_letters": ("failed_at", "records"),
    "flow_events": ("at", "records"),
    "work_item_events": ("created_at", "records"),
    "decisions": ("decided_at", "records"),
    "drafts": ("created_at", "records"),
    "command_results": ("completed_at", "records"),
    "eligibility_results": ("written_at", "records"),
    "pilot_agreement": ("decided_at", "records"),
}


@dataclass
class MigrationContext:
    """What a Python migration gets: the client, the database, and small helpers."""

    client: Any  # a clickhouse-connect client (chdb or HTTP)
    database: str

    def command(self, sql: str) -> None:
        self.client.command(sql.replace("{db}", self.database))

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
        result = self.client.query(sql.replace("{db}", self.database), parameters=parameters)
        return [tuple(r) for r in result.result_rows]

    def columns(self, table: str) -> list[str]:
        return [
            c
            for (c,) in self.rows(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s ORDER BY position",
                {"db": self.database, "t": table},
            )
        ]

    def table_info(self, table: str) -> tuple[str, str, str] | None:
        """(partition_key, sorting_key, engine_full) of a table, or None when it does not exist."""
        rows = self.rows(
            "SELECT partition_key, sorting_key, engine_full FROM system.tables WHERE database = %(db)s AND name = %(t)s",
            {"db": self.database, "t": table},
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def count(self, table: str) -> int:
        return int(self.rows(f"SELECT count() FROM {{db}}.{table}")[0][0])  # noqa: S608 - our table names


def repartition(ctx: MigrationContext, table: str, aside: str, partition_by: str, *, ttl: str = "") -> None:
    """Finish moving the set-aside ``aside`` into ``table`` re-created with ``partition_by``
    (same columns, engine version and sort key), then drop ``aside``. Re-runnable after a crash.

    WHY no TRUNCATE and no count equality (review s19 M3): against a server, other writers are
    live while this runs (old sinks during a rolling upgrade, Kafka-engine views that follow the
    table by name after the RENAME). Their rows land in the new ``table`` and their Kafka offsets
    are committed, so deleting them loses them for good, and they make any equality check fail
    forever. So: copy only the set-aside rows whose Kafka position and key the new table lacks
    (what a crashed earlier run copied is not copied twice, what writers added is never
    touched), and require every set-aside key to be in the new table (a subset, not equal).
    """
    source = ctx.table_info(aside)
    if source is None:
        return
    engine = source[2].split(")", 1)[0] + ")"  # e.g. ReplacingMergeTree(written_at)
    sort_key = source[1]
    ctx.command(
        f"CREATE TABLE IF NOT EXISTS {{db}}.{table} AS {{db}}.{aside} "
        f"ENGINE = {engine} PARTITION BY {partition_by} ORDER BY ({sort_key})" + (f" TTL {ttl}" if ttl else "")
    )
    if ctx.count(aside):
        target = set(ctx.columns(table))
        shared = ", ".join(c for c in ctx.columns(aside) if c in target)
        # a row is its Kafka position + key: one message may write several rows of one table
        row = f"kafka_topic, kafka_partition, kafka_offset, {sort_key}"
        ctx.command(
            f"INSERT INTO {{db}}.{table} ({shared}) SELECT {shared} FROM {{db}}.{aside} "  # noqa: S608 - our names
            f"WHERE ({row}) NOT IN (SELECT {row} FROM {{db}}.{table})"
        )
    # merges may collapse versions in the new table; they never remove a key
    missing = ctx.rows(
        f"SELECT count() FROM {{db}}.{aside} WHERE ({sort_key}) NOT IN (SELECT {sort_key} FROM {{db}}.{table})"  # noqa: S608
    )[0][0]
    if missing:
        raise RuntimeError(
            f"ClickHouse migration: {missing} rows of {aside} have no key in {table}; re-run to copy them"
        )
    ctx.command(f"DROP TABLE {{db}}.{aside}")  # every key it held is in the new table


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    checksum: str
    apply: Callable[[MigrationContext], None] = field(compare=False)
    amended_from: frozenset[str] = field(default=frozenset(), compare=False)  # earlier checksums, same statements


def split_statements(sql: str) -> list[str]:
    """SQL text -> statements (``;`` ends one at the end of a line); comment-only chunks dropped."""
    out = []
    for chunk in _STATEMENT_END.split(sql):
        body = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if body:
            out.append(body)
    return out


def _sql_apply(text: str) -> Callable[[MigrationContext], None]:
    def apply(ctx: MigrationContext) -> None:
        for statement in split_statements(text):
            ctx.command(statement)

    return apply


def discover() -> list[Migration]:
    """Every migration file of this package, by version; two files with one version is an error."""
    found: dict[int, Migration] = {}
    for entry in resources.files(__name__).iterdir():
        m = _FILE.match(entry.name)
        if m is None:
            continue
        version, name, ext = int(m.group(1)), m.group(2), m.group(3)
        text = entry.read_text(encoding="utf-8")
        amended: frozenset[str] = frozenset()
        if ext == "sql":
            apply = _sql_apply(text)
        else:
            module = importlib.import_module(f"{__name__}.{entry.name[:-3]}")
            apply = module.migrate
            amended = frozenset(getattr(module, "AMENDED_FROM", {}))
        if version in found:
            raise ValueError(f"two ClickHouse migrations with version {version:04d}: {found[version].name}, {name}")
        found[version] = Migration(version, name, hashlib.sha256(text.encode()).hexdigest(), apply, amended)
    return [found[v] for v in sorted(found)]


def applied(client: Any, database: str) -> dict[int, str]:
    """version -> checksum of the migrations this database has (empty for a new database)."""
    ctx = MigrationContext(client, database)
    if ctx.table_info("schema_migrations") is None:
        return {}
    return {
        int(v): c
        for v, c in ctx.rows(
            "SELECT version, argMax(checksum, applied_at) FROM {db}.schema_migrations GROUP BY version"
        )
    }


def apply_migrations(
    client: Any,
    database: str,
    migrations: list[Migration] | None = None,
    *,
    lock: bool = False,
    lock_wait_s: float = 600.0,
) -> list[int]:
    """Apply the migrations this database does not have yet, in order; returns their versions.

    ``lock``: hold ``{db}.schema_migrations_lock`` while migrating (a ClickHouse server with
    several sink processes starting at once). ``CREATE TABLE`` without ``IF NOT EXISTS``
    succeeds for exactly one of them; the others wait, then find the work done. Taken only
    when something is pending, so a lock left by a killed migrator blocks only the next
    migration (it fails after ``lock_wait_s`` saying which table to drop), never a restart."""
    ctx = MigrationContext(client, database)
    ctx.command("CREATE DATABASE IF NOT EXISTS {db}")
    ctx.command(
        "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, checksum String, "
        "applied_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version"
    )
    todo = migrations if migrations is not None else discover()
    if lock and all(m.version in applied(client, database) for m in todo):
        return []
    if lock:
        _take_lock(ctx, lock_wait_s)
    try:
        return _apply(ctx, todo)
    finally:
        if lock:
            ctx.command("DROP TABLE IF EXISTS {db}.schema_migrations_lock")


def _take_lock(ctx: MigrationContext, wait_s: float) -> None:
    owner = f"{socket.gethostname()}:{os.getpid()}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            ctx.command(f"CREATE TABLE {{db}}.schema_migrations_lock (owner String) ENGINE = Memory COMMENT '{owner}'")
            return
        except Exception as exc:
            if "already exists" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"another process has been migrating {ctx.database} for over {wait_s:.0f} s "
                    f"({ctx.database}.schema_migrations_lock); if none is, drop that table"
                ) from exc
            time.sleep(1.0)


def _apply(ctx: MigrationContext, todo: list[Migration]) -> list[int]:
    done = applied(ctx.client, ctx.database)
    now: list[int] = []
    for mig in todo:
        if mig.version in done:
            if done[mig.version] != mig.checksum and done[mig.version] not in mig.amended_from:
                log.warning(
                    "ClickHouse migration %04d_%s changed after it was applied; not re-applied", mig.version, mig.name
                )
            continue
        log.info("applying ClickHouse migration %04d_%s", mig.version, mig.name)
        mig.apply(ctx)
        ctx.client.insert(
            f"{ctx.database}.schema_migrations",
            [[mig.version, mig.name, mig.checksum, datetime.now(tz=UTC)]],
            column_names=["version", "name", "checksum", "applied_at"],
        )
        now.append(mig.version)
    return now


_TTL_DAYS = re.compile(r"\bTTL\b.*?toIntervalDay\((\d+)\)")


def apply_retention(client: Any, database: str, *, audit_days: int | None, records_days: int | None) -> dict[str, int]:
    """Set each ``RETENTION`` table's TTL to the configured days (0: no TTL, rows kept; None:
    leave that kind of table as it is).

    Returns table -> days for the tables it changed. ``MODIFY TTL`` rewrites parts in the
    background (a mutation), so it runs only when the configured days differ."""
    ctx = MigrationContext(client, database)
    changed = {}
    for table, (column, which) in RETENTION.items():
        info = ctx.table_info(table)
        if info is None:
            continue
        days = audit_days if which == "audit" else records_days
        if days is None:
            continue
        m = _TTL_DAYS.search(info[2])
        have = int(m.group(1)) if m else 0
        if have == days:
            continue
        if days <= 0:
            ctx.command(f"ALTER TABLE {{db}}.{table} REMOVE TTL")
        else:
            ctx.command(f"ALTER TABLE {{db}}.{table} MODIFY TTL toDateTime({column}) + toIntervalDay({int(days)})")
        log.info("ClickHouse %s: retention %s -> %s days", table, have or "none", days or "none")
        changed[table] = days
    return changed
