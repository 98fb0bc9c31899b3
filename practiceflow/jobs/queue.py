"""`practiceflow queue`: the work queues from a terminal, for practices without EHR write access.

``list`` shows open items by queue (urgent first, then oldest); ``show`` prints one item with
its evidence, options and drafts; ``decide`` (and the ``approve`` / ``reject`` / ``edit``
shortcuts) writes a ``StaffDecision`` to ``pf.decisions`` — the same event the EHR write-back
and staff tools produce — which the worker's decisions agent applies. Viewing an item and
deciding on it are audited (actor = ``--actor``). The command reads only the practice's own
partition of ``pf.handoff`` and refuses an option the item does not offer before anything is
written, so a typo never becomes a decision.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime

from practiceflow.processors.audit import audit_event
from practiceflow.processors.workflows.decisions import ROLE_REQUIRED
from practiceflow.processors.workflows.workitem import END_STATES
from practiceflow.schemas.typed import HandoffItemDict, StaffDecisionDict
from practiceflow.settings import Settings
from practiceflow.streams import catalog
from practiceflow.streams.clock import now_ms
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde
from practiceflow.streams.workitem_reader import open_by_queue, read_work_items


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--practice", help="the practice (default: default_practice_id)")
    p.add_argument("--actor", default=None, help="who is acting (user id; required to decide)")
    p.add_argument(
        "--role",
        default=None,
        help="the actor's role (clinician, nurse, front_desk, billing...); clinician items need clinician",
    )
    qsub = p.add_subparsers(dest="action", required=True)
    q = qsub.add_parser("list", help="open items by queue, urgent first")
    q.add_argument("--queue", help="only this queue (front_desk, clinician, billing, ...)")
    q.add_argument("--all", action="store_true", help="also items that are done, rejected or superseded")
    q = qsub.add_parser("show", help="one item with its evidence, options and drafts")
    q.add_argument("item_id")
    q = qsub.add_parser("decide", help="decide on an item with one of its options")
    q.add_argument("item_id")
    q.add_argument("option")
    q.add_argument("--edit", action="append", default=[], metavar="FIELD=VALUE", help="for edit: a changed field")
    q.add_argument("--comment")
    for name in ("approve", "reject", "edit"):
        q = qsub.add_parser(name, help=f"shortcut for: decide ITEM {name}")
        q.add_argument("item_id")
        q.add_argument("--edit", action="append", default=[], metavar="FIELD=VALUE")
        q.add_argument("--comment")


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M") if ms else "-"


def _find(items: dict[str, HandoffItemDict], item_id: str) -> HandoffItemDict | None:
    if item_id in items:
        return items[item_id]
    matches = [i for k, i in items.items() if k.endswith(item_id) or k.split(":", 1)[-1].startswith(item_id)]
    return matches[0] if len(matches) == 1 else None  # a unique prefix of the digest is enough


def _audit(producer: DurableProducer, serde: AvroSerde, cfg: Settings, practice: str, **kw: str) -> None:
    topic = catalog.BY_SUFFIX["audit.in"].name(cfg.topic_prefix)
    ev = audit_event(practice, at=now_ms(), **kw)  # type: ignore[arg-type]
    producer.send(topic, practice, serde.encode(f"{topic}-value", "AuditEvent", ev), practice)


def print_item(item: HandoffItemDict) -> None:
    by: dict[str, object] = dict(item.get("produced_by") or {})
    made = (
        f"{by.get('rule_id')}@{by.get('rule_version')}"
        if by.get("kind") == "rule"
        else f"{by.get('model')} prompt {by.get('prompt_version')}"
    )
    print(
        f"{item['item_id']}  [{item.get('state', 'open')} r{item.get('revision', 1)}]  {item['queue']}  {item['priority']}"
    )
    print(f"  {item['title']}")
    print(f"  kind: {item.get('kind') or item['workflow']}   by: {made}   created: {_when(item['created_at'])}")
    print(f"  what happened: {item['what_happened']}")
    if item.get("proposed_action"):
        print(f"  proposed: {item['proposed_action']}")
    if item.get("decision_needed"):
        print(f"  decide: {item['decision_needed']}")
    for e in item.get("evidence") or []:
        where = f" [{e['record_type']}]" if e.get("record_type") else ""
        page = f" p.{e['page']}" if e.get("page") else ""
        assess = f" ({e['assessment']})" if e.get("assessment") else ""
        print(f"  - {e['label']}: {e.get('excerpt') or e.get('value') or ''}{assess}{where}{page}")
    if item.get("draft_ids"):
        print(f"  drafts: {', '.join(item['draft_ids'])}")
    opts = ", ".join(f"{o['option']} ({o['label']})" for o in item.get("options") or [])
    if opts:
        print(f"  options: {opts}")
    if item.get("outcome"):
        print(f"  outcome: {item['outcome']} at {_when(item.get('updated_at'))}")


def main(args: argparse.Namespace, cfg: Settings, serde: AvroSerde, bootstrap: str) -> int:
    practice = args.practice or cfg.default_practice_id
    items = read_work_items(bootstrap, serde, cfg.topic_prefix, practice)
    if args.action == "list":
        chosen = items.values() if args.all else [i for q in open_by_queue(items).values() for i in q]
        shown = [i for i in chosen if args.queue is None or i["queue"] == args.queue]
        print(f"{'item':40s} {'queue':12s} {'priority':8s} {'state':11s} {'created':16s} title")
        for it in shown:
            print(
                f"{it['item_id']:40s} {it['queue']:12s} {it['priority']:8s} {it.get('state', 'open'):11s} "
                f"{_when(it['created_at']):16s} {it['title']}"
            )
        print(f"{len(shown)} item(s)")
        return 0
    item = _find(items, args.item_id)
    if item is None:
        print(f"no single work item {args.item_id!r} in practice {practice}", file=sys.stderr)
        return 1
    producer = DurableProducer(bootstrap, cfg.topic_partitions, client_id="practiceflow-queue")
    try:
        if args.action == "show":
            print_item(item)
            _audit(
                producer,
                serde,
                cfg,
                practice,
                actor=args.actor or "cli",
                action="work_item_viewed",
                entity_type="HandoffItem",
                entity_id=item["item_id"],
                reason="shown in practiceflow queue",
            )
            return 0
        option = args.option if args.action == "decide" else args.action
        if not args.actor:
            print("queue: --actor is required to decide (who is deciding)", file=sys.stderr)
            return 2
        offered = {o["option"] for o in item.get("options") or []} | {"assign", "escalate"}
        if option not in offered:
            print(f"option {option!r} is not offered; this item offers: {', '.join(sorted(offered))}", file=sys.stderr)
            return 2
        need = ROLE_REQUIRED.get(item["queue"])
        if need is not None and option not in ("assign", "escalate") and args.role != need:
            print(f"only a {need} may decide a {item['queue']} item (give --role {need})", file=sys.stderr)
            return 2
        if item.get("state", "open") in END_STATES:
            print(f"item is {item.get('state')}; nothing to decide", file=sys.stderr)
            return 2
        edits = dict(e.split("=", 1) for e in args.edit if "=" in e)
        decision: StaffDecisionDict = {
            "practice_id": practice,
            "decision_id": f"cli:{uuid.uuid4().hex}",
            "item_id": item["item_id"],
            "item_revision": item.get("revision", 1),
            "option": option,
            "actor": args.actor,
            "actor_role": args.role,
            "edits": edits,
            "comment": args.comment,
            "channel": "cli",
            "decided_at": now_ms(),
        }
        topic = catalog.BY_SUFFIX["decisions"].name(cfg.topic_prefix)
        producer.send(
            topic,
            f"{practice}/{item['item_id']}",
            serde.encode(f"{topic}-value", "StaffDecision", dict(decision)),
            practice,
        )
        print(json.dumps({"decision_id": decision["decision_id"], "item_id": item["item_id"], "option": option}))
        return 0
    finally:
        producer.close()
