"""0002: partition the 0001 tables by practice bucket and month.

Why buckets, not one partition per practice: ClickHouse advises few partitions (a partition
key is for data management, not for queries; thousands of partitions per table slow
inserts, merges and start-up, and one INSERT may touch at most 100 partitions by default).
``cityHash64(practice_id) % 8`` keeps a region of hundreds of practices at 8 buckets x
months; queries filter by ``practice_id``, the first column of every sort key. Months let
retention (TTL) and maintenance drop whole parts.

The time column was meant to be one that does not change between the versions of a row
(a work item's ``created_at``, not its ``updated_at``): ReplacingMergeTree collapses
versions only inside one partition. ``denial_money`` rows are re-versioned for months
(an entry is denied, then recovered), so it is partitioned by bucket only. That holds for
``handoff_items``, ``flow_events`` and ``audit_events``, but not for the ``written_at`` tables
(the sink's clock at each write) nor ``dead_letters.failed_at``: versions of one key written in
different months never merged on disk. 0007 re-partitions those by bucket only (review S17).

A partition key cannot be altered: each table is renamed to ``<table>_before_0002``,
re-created with the same columns, engine and sort key plus the partition key, and its
rows copied back (Kafka positions included); the set-aside table is dropped once the
new table holds all of its keys. Re-runnable: after a crash the rows not copied yet are copied
from the set-aside table, and rows other writers added meanwhile are kept (review s19 M3,
``repartition``).
"""

from __future__ import annotations

from practiceflow.sinks.clickhouse_migrations import MigrationContext, repartition

# checksums this file had before edits that changed no statement (the runner treats them as this
# file: a database that applied the earlier text does not warn that it changed)
AMENDED_FROM = {
    "a9302212049309da5a1c637efa696c8bdf3b8c9628a1cd07c4fb3c0e7f9e5695": "docstring: which times are stable (S17)",
    "aaac1292b8d5716f97c35cc2c45e06a118318c37118f0d5a199e74244982d1cd": (
        "s19 M3: a resumed copy no longer TRUNCATEs rows other writers added; a finished run left the same tables"
    ),
}

PRACTICE_BUCKETS = 8


def practice_month(column: str | None) -> str:
    """The partition expression of a table whose rows' stable time is ``column``."""
    bucket = f"cityHash64(practice_id) % {PRACTICE_BUCKETS}"
    return f"({bucket}, toYYYYMM({column}))" if column else bucket


# table -> its stable time column (None: by practice bucket only)
PARTITIONED: dict[str, str | None] = {
    "records": "written_at",
    "observations": "written_at",
    "immunizations": "written_at",
    "fax_classifications": "written_at",
    "handoff_items": "created_at",
    "dead_letters": "failed_at",
    "denial_money": None,
    "flow_events": "at",
    "audit_events": "at",
}


def _norm(expr: str) -> str:
    return expr.replace(" ", "").strip("()")


def migrate(ctx: MigrationContext) -> None:
    for table, column in PARTITIONED.items():
        want = practice_month(column)
        aside = f"{table}_before_0002"
        info = ctx.table_info(table)
        if info is not None and _norm(info[0]) != _norm(want):
            ctx.command(f"RENAME TABLE {{db}}.{table} TO {{db}}.{aside}")
        repartition(ctx, table, aside, want)  # nothing when partitioned already and no copy pending
