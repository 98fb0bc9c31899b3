"""`practiceflow pilot report`: how often the agent agreed with staff, per workflow, kind and rule version.

Reads the comparisons the worker wrote in pilot mode (README "Pilot mode") from ClickHouse's
``pilot_agreement`` (default) or straight from the ``pf.pilot.comparisons`` topic, sums them
with the same pure function (``processors/pilot/compare.summarize``), and prints agreement
beside the staff minutes the agreed items would have saved (documented per-task times,
``rules/pilot/tasks.yaml``), plus how many commands pilot mode withheld (from the audit trail).
"""

from __future__ import annotations

import argparse
from typing import Any

from practiceflow.processors.pilot.compare import Key, report_lines, summarize
from practiceflow.settings import Settings
from practiceflow.streams import catalog
from practiceflow.streams.serde import AvroSerde
from practiceflow.streams.topic_reader import read_to_end

_COLUMNS = ("practice_id", "item_id", "workflow", "kind", "rule_id", "rule_version", "verdict", "minutes_saved")


def add_arguments(p: argparse.ArgumentParser) -> None:
    psub = p.add_subparsers(dest="action", required=True)
    r = psub.add_parser("report", help="agreement per workflow, kind and rule version, with minutes saved")
    r.add_argument("--practice", help="the practice (default: default_practice_id)")
    r.add_argument("--source", choices=["clickhouse", "topic"], default="clickhouse")


def from_clickhouse(sink: Any, practice: str, since: str = "1", params: dict | None = None) -> list[dict[str, Any]]:
    """The practice's comparisons in ``pilot_agreement`` (FINAL: one per item); ``since`` narrows the rows."""
    rows = sink.query(
        "SELECT " + ", ".join(_COLUMNS) + " FROM {db}.pilot_agreement FINAL"  # noqa: S608 - fixed text, bound values
        " WHERE practice_id = %(p)s AND " + since,
        {"p": practice, **(params or {})},
    )
    return [dict(zip(_COLUMNS, r, strict=True)) for r in rows]


def withheld_in_clickhouse(sink: Any, practice: str, since: str = "1", params: dict | None = None) -> int:
    rows = sink.query(
        "SELECT count() FROM {db}.audit_events FINAL WHERE practice_id = %(p)s"  # noqa: S608 - fixed text
        " AND action = 'command_withheld' AND " + since,
        {"p": practice, **(params or {})},
    )
    return int(rows[0][0])


def from_topic(bootstrap: str, serde: AvroSerde, prefix: str, practice: str, timeout: float = 60.0) -> list[dict]:
    """The practice's comparisons on ``<prefix>.pilot.comparisons`` (its one partition; reads, never commits)."""
    topic = catalog.BY_SUFFIX["pilot.comparisons"].name(prefix)
    out: list[dict] = []
    try:
        for m in read_to_end(bootstrap, topic, "pilot-report", timeout, practice_id=practice):
            c = serde.decode(m.value() or b"", "PilotComparison")
            if c["practice_id"] == practice:
                out.append(c)
    except TimeoutError:
        pass  # as this report always did: the comparisons read within `timeout`
    return out


def print_report(groups: dict[Key, dict[str, float]], withheld: int | None, indent: str = "") -> None:
    if not groups:
        print(f"{indent}no staff decisions compared yet")
    for line in report_lines(groups):
        print(f"{indent}{line}")
    total = sum(c.get("minutes_saved", 0) for c in groups.values())
    print(f"{indent}staff minutes saved by the agreed items: {total:.1f} (documented per-task times, rules/pilot)")
    if withheld is not None:
        print(f"{indent}commands withheld by pilot mode (nothing written back or sent): {withheld}")


def main(args: argparse.Namespace, cfg: Settings) -> int:
    practice = args.practice or cfg.default_practice_id
    withheld: int | None = None
    if args.source == "topic":
        from practiceflow.localstack.connect import endpoints
        from practiceflow.streams.serde import registry_client

        with endpoints(cfg, autostart=False) as ep:
            comparisons = from_topic(
                ep.bootstrap, AvroSerde(registry_client(ep.registry_url)), cfg.topic_prefix, practice
            )
    else:
        from practiceflow.sinks.clickhouse import ClickHouseSink

        sink = ClickHouseSink(cfg.chdb_dsn, cfg.clickhouse_database)
        try:
            comparisons = from_clickhouse(sink, practice)
            withheld = withheld_in_clickhouse(sink, practice)
        finally:
            sink.close()
    print(f"pilot report for {practice} ({len(comparisons)} compared work items, from {args.source})")
    print_report(summarize(comparisons), withheld)
    return 0
