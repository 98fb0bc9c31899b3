"""0007: partition the tables whose version time moves by practice bucket only (review S17).

0002 and 0003 partitioned seven tables by ``(practice bucket, month of <time>)`` where
``<time>`` is the sink's clock when it wrote the row (``written_at``), when the message
failed (``failed_at``) or when a command finished (``completed_at``). Those times change
between the versions of one key: a patient re-sent in February after January, a dead letter
replayed and failing again. ReplacingMergeTree collapses versions only inside a partition,
and background merges and ``OPTIMIZE ... FINAL`` never merge across partitions, so every
monthly version stayed on disk until the TTL (six years), and ``FINAL`` could not use its
partition-local shortcut. ``FINAL`` answers stayed right (the partition key is not in the
sort key), which is why this was not a must-fix.

Like ``denial_money``, these tables are now partitioned by ``cityHash64(practice_id) % 8``
alone. Retention keeps working: the row TTL (``toDateTime(<time>) + days``) is carried over
from the old table (and ``apply_retention`` sets it at every start anyway); a TTL deletes rows
inside parts, it does not need month partitions. Tables whose time is fixed per key
(``handoff_items.created_at``, ``flow_events.at``, ``audit_events.at``, the 0003 tables keyed by
their creation or decision time) keep their months.

Same procedure as 0002 (the partition key cannot be altered): rename to
``<table>_before_0007``, create with the same columns, engine, sort key and TTL and the new
partition key, copy the rows (Kafka positions included), check every key arrived, drop the
set-aside table. Re-runnable after a crash: the copy is redone from the set-aside table.
"""

from __future__ import annotations

import importlib
import re

from practiceflow.sinks.clickhouse_migrations import MigrationContext

PRACTICE_BUCKETS = 8
BY_BUCKET = f"cityHash64(practice_id) % {PRACTICE_BUCKETS}"

# the tables 0002/0003 partitioned by a month of a time that differs between a key's versions
TABLES = (
    "records",
    "observations",
    "immunizations",
    "fax_classifications",
    "dead_letters",
    "command_results",
    "eligibility_results",
)

_TTL = re.compile(r"\bTTL\s+(.+?)(?=\s+SETTINGS\b|$)", re.S)


def _norm(expr: str) -> str:
    return expr.replace(" ", "").strip("()")


def migrate(ctx: MigrationContext) -> None:
    copy_rows = importlib.import_module("practiceflow.sinks.clickhouse_migrations.0001_baseline").copy_rows
    for table in TABLES:
        aside = f"{table}_before_0007"
        info = ctx.table_info(table)
        if info is not None and _norm(info[0]) != _norm(BY_BUCKET):
            ctx.command(f"RENAME TABLE {{db}}.{table} TO {{db}}.{aside}")
        source = ctx.table_info(aside)
        if source is None:
            continue  # by bucket already, and no copy pending
        engine = source[2].split(")", 1)[0] + ")"  # e.g. ReplacingMergeTree(written_at)
        ttl = _TTL.search(source[2])
        ctx.command(
            f"CREATE TABLE IF NOT EXISTS {{db}}.{table} AS {{db}}.{aside} "
            f"ENGINE = {engine} PARTITION BY {BY_BUCKET} ORDER BY ({source[1]})"
            + (f" TTL {ttl.group(1).strip()}" if ttl else "")
        )
        ctx.command(f"TRUNCATE TABLE {{db}}.{table}")  # a crashed earlier run may have copied part
        if ctx.count(aside):
            copy_rows(ctx, aside, table)
        keys = f"uniqExact({source[1]})"  # merges may collapse versions; they never change the keys
        copied = ctx.rows(f"SELECT {keys} FROM {{db}}.{table}")[0][0]  # noqa: S608 - our table names
        had = ctx.rows(f"SELECT {keys} FROM {{db}}.{aside}")[0][0]  # noqa: S608
        if copied != had:
            raise RuntimeError(f"ClickHouse migration 0007: {table} holds {copied} keys of {aside}'s {had}")
        ctx.command(f"DROP TABLE {{db}}.{aside}")  # same columns, same rows: nothing is lost with it
