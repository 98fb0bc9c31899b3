"""kill -9 of the shipped worker in the middle of the synthetic day, then a restart.

Issue 7's last "Done when": the day's inputs go through ``practiceflow gateways`` (MLLP,
HTTP, folder drops, sent as ``practiceflow day`` sends them) into the raw topics;
``practiceflow worker`` (the production command, with OCR and its ClickHouse sink thread
on a chdb directory) is SIGKILLed when about half of the raw messages have an outcome,
then started again and left to drain. Afterwards:

- every raw message has exactly one outcome: per (practice, feed, message id) one kind of
  first outcome (normalized or dead-lettered) and a ``duplicate`` for each further copy
  (the day resends one HL7 message after a lost ACK);
- the audit topic holds no event id twice and every practice's chain verifies;
- for every table the sink writes, ClickHouse holds one row per distinct output (raw count:
  the copies of an output that the killed batch's replay sent again share its origin, and the
  sink writes them once) and one row per distinct sort key (``FINAL`` count); where one key has
  outputs of several inputs, a merge may already have collapsed some, so the raw count then lies
  between the two (``practiceflow/localstack/chaos.py`` ``reconcile_clickhouse``, shared with the
  chaos harness).

Everything runs against the session broker; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from practiceflow.jobs.day import DEMO_SECRET, DayReport, _send_all
from practiceflow.localstack.chaos import TopicReader, reconcile_clickhouse
from practiceflow.processors.audit import verify_chain
from practiceflow.sampleday.generate import build_day
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.streams import catalog
from practiceflow.streams.clickhouse_sink import committed_lag, sink_topics
from practiceflow.streams.serde import AvroSerde, registry_client
from tests.fixtures import closed_port
from tests.test_worker_cli import _stop, _wait_http

pytestmark = [pytest.mark.broker, pytest.mark.timeout(600)]

PRACTICE = "clinic-crash"
FIRST_OUTCOMES = ("normalized", "dead_lettered")


class _Drops:
    """The gateways' folder drops as ``_send_all`` uses them (``inbox(practice, feed)``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def inbox(self, practice: str, feed: str) -> Path:
        path = self.root / practice / feed / "inbox"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def empty(self, practice: str) -> bool:
        return not any(any(self.inbox(practice, f).iterdir()) for f in ("hl7v2", "x12", "fax"))


def _key(v: dict[str, Any]) -> tuple[str, str, str]:
    return v["practice_id"], v["feed"], v["message_id"]


def _outcomes(flow: list[dict[str, Any]]) -> dict[tuple[str, str, str], Counter]:
    by_key: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for ev in flow:
        if ev["stage"] in (*FIRST_OUTCOMES, "duplicate"):
            by_key[_key(ev)][ev["stage"]] += 1
    return by_key


def _complete(copies: Counter, outcomes: dict[tuple[str, str, str], Counter]) -> int:
    """Raw message keys whose every copy has its outcome (first outcome + a duplicate per resend)."""
    done = 0
    for key, n in copies.items():
        got = outcomes.get(key, Counter())
        if sum(got[k] for k in FIRST_OUTCOMES) >= 1 and got["duplicate"] >= n - 1:
            done += 1
    return done


def _warnings(log: Path) -> str:
    """The worker log's WARNING and worse lines (the last 40): what a failure needs, without the
    shutdown's INFO lines that end the log."""
    lines = [
        ln
        for ln in log.read_text(errors="replace").splitlines()
        if any(w in ln for w in ("[WARNING]", "[ERROR]", "[CRITICAL]"))
    ]
    return "\n".join(lines[-40:]) or "(none)"


def test_kill_9_mid_day_then_restart_leaves_one_outcome_each_a_valid_chain_and_reconciled_clickhouse(stack, tmp_path):
    started = time.monotonic()
    prefix = f"t{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    group = f"day-crash-{uuid.uuid4().hex[:8]}"
    ports = {"web": closed_port(), "mllp": closed_port(), "http": closed_port()}
    token = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "PRACTICEFLOW_CONFIG": str(tmp_path / "none.toml"),
        "PRACTICEFLOW_KAFKA_BOOTSTRAP": stack.bootstrap,
        "PRACTICEFLOW_SCHEMA_REGISTRY_URL": stack.registry_url,
        "PRACTICEFLOW_STATE_DIR": str(state),
        "PRACTICEFLOW_TOPIC_PREFIX": prefix,
        "PRACTICEFLOW_CONSUMER_GROUP": group,
        "PRACTICEFLOW_WEB_PORT": str(ports["web"]),
        "PRACTICEFLOW_MLLP_PORT": str(ports["mllp"]),
        "PRACTICEFLOW_HTTP_PORT": str(ports["http"]),
        "PRACTICEFLOW_PRACTICES": json.dumps([PRACTICE]),
        "PRACTICEFLOW_DEFAULT_PRACTICE_ID": PRACTICE,
        "PRACTICEFLOW_PORTAL_SECRETS": json.dumps({PRACTICE: DEMO_SECRET}),
        "PRACTICEFLOW_GATEWAY_TOKENS": json.dumps({PRACTICE: token}),
    }
    log = tmp_path / "worker.log"

    def spawn(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log" if name != "worker" else log, "ab") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "practiceflow.cli", name],
                env=env,
                cwd=tmp_path,  # Faust writes its data directory into the working directory
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    plan = build_day(seed=11, n_patients=10, practice_id=PRACTICE)
    # CI size: the 5-page claim-checked fax costs minutes of OCR on a small runner (its path is
    # tested in tests/streams/test_claimcheck.py); the day's other faxes stay
    plan.fax_upload = [f for f in plan.fax_upload if f[2].get("pages") == "1"]
    serde = AvroSerde(registry_client(stack.registry_url))
    procs: dict[str, subprocess.Popen] = {}
    readers: list[TopicReader] = []
    kill_report = ""
    try:
        procs["gateways"] = spawn("gateways")  # creates the topics
        _wait_http(f"http://127.0.0.1:{ports['http']}/healthz", 90, procs["gateways"], tmp_path / "gateways.log")
        raw_topics = [s.name(prefix) for s in catalog.CATALOG if s.kind == catalog.Kind.RAW]
        raw = TopicReader(stack.bootstrap, raw_topics, serde)
        flow = TopicReader(stack.bootstrap, [f"{prefix}.analytics.flow"], serde)
        readers += [raw, flow]

        # the whole day is sent (and durably in the raw topics) before the worker starts, so
        # the kill lands in the middle of the day's backlog whatever the machine's speed
        drops = _Drops(state / "drop")
        report = DayReport()
        asyncio.run(_send_all(plan, ports["mllp"], ports["http"], drops, report, token))  # type: ignore[arg-type]
        assert report.acks.get("AA", 0) >= len(plan.mllp) - 2, report.acks
        deadline = time.monotonic() + 60
        while not drops.empty(PRACTICE) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert drops.empty(PRACTICE), "the gateways did not take the folder drops"
        time.sleep(1.5)  # a dropped file's last message is produced just before its removal
        raw.read_to_end()
        copies = Counter(_key(v) for v in raw.values())
        n_raw = sum(copies.values())
        assert n_raw >= 40 and any(n > 1 for n in copies.values()), (n_raw, copies.most_common(2))

        procs["worker"] = spawn("worker")
        _wait_http(f"http://127.0.0.1:{ports['web']}/readyz", 150, procs["worker"], log)
        deadline = time.monotonic() + 150
        while _complete(copies, _outcomes(flow.values())) < len(copies) // 2 and time.monotonic() < deadline:
            assert procs["worker"].poll() is None, log.read_text()[-3000:]
            flow.poll()
        procs["worker"].send_signal(signal.SIGKILL)
        procs["worker"].wait(30)
        flow.poll(1)
        at_kill = _complete(copies, _outcomes(flow.values()))
        kill_report = f"killed with {at_kill}/{len(copies)} raw message ids complete"
        assert 0 < at_kill < len(copies), kill_report  # the kill really was mid-day

        procs["worker"] = spawn("worker")  # rejoins once the broker dropped the killed member (~45 s)
        deadline = time.monotonic() + 300
        while _complete(copies, _outcomes(flow.values())) < len(copies) and time.monotonic() < deadline:
            assert procs["worker"].poll() is None, log.read_text()[-3000:]
            flow.poll()
        time.sleep(3)  # anything written twice after the last outcome shows up too
        lag_topics = list(sink_topics(prefix))
        deadline = time.monotonic() + 90
        lag = committed_lag(stack.bootstrap, f"{group}-clickhouse-sink", lag_topics)
        while lag and time.monotonic() < deadline:
            time.sleep(0.5)
            lag = committed_lag(stack.bootstrap, f"{group}-clickhouse-sink", lag_topics)
        assert lag == 0, f"the ClickHouse sink is {lag} messages behind:\n{log.read_text()[-3000:]}"
        flow.read_to_end()
    finally:
        for proc in procs.values():
            _stop(proc)  # the worker must let go of chdb before this process opens it
        for r in readers:
            r.close()

    # 1. every raw message has exactly one outcome
    outcomes = _outcomes(flow.values())
    missing = [k for k in copies if not outcomes.get(k)]
    assert not missing, (
        f"{len(missing)} of {len(copies)} raw message ids without an outcome: {missing[:5]} "
        f"(their flow stages: {[[ev['stage'] for ev in flow.values() if _key(ev) == k] for k in missing[:5]]}); {kill_report}; "
        f"the worker's warnings (both runs): {_warnings(log)}"
    )
    mixed = {k: c for k, c in outcomes.items() if k in copies and sum(1 for s in FIRST_OUTCOMES if c[s]) != 1}
    assert not mixed, f"{len(mixed)} ids not exactly one of normalized/dead-lettered: {list(mixed.items())[:3]}"
    short = {
        k: (copies[k], c["duplicate"]) for k, c in outcomes.items() if k in copies and c["duplicate"] < copies[k] - 1
    }
    assert not short, f"resent copies without their duplicate outcome (copies, duplicates): {short}"
    stray = {k: c for k, c in outcomes.items() if k not in copies}
    assert not stray, f"outcomes for messages never on a raw topic: {list(stray.items())[:3]}"
    doubled = sum(1 for k, c in outcomes.items() if sum(c.values()) > copies[k])

    # 2. the audit chain: no event twice, every practice's chain verifies
    audit_reader = TopicReader(stack.bootstrap, [f"{prefix}.audit"], serde)
    audit_reader.read_to_end()
    audit_reader.close()
    audit = audit_reader.values()
    assert audit
    twice = {k: n for k, n in Counter(ev["event_id"] for ev in audit).items() if n > 1}
    assert not twice, f"{len(twice)} audit event ids written more than once of {len(audit)}"
    by_practice: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in audit:
        by_practice[ev["practice_id"]].append(ev)
    for practice, events in by_practice.items():
        assert verify_chain(events) == (True, -1), (practice, verify_chain(events), len(events))

    # 3. ClickHouse reconciles with the topics: raw rows = distinct outputs (a replay's copies of an
    # output are one row), FINAL rows = distinct sort keys (the chaos harness's check)
    types = sink_topics(prefix)
    sinks = TopicReader(stack.bootstrap, list(types), serde)
    sinks.read_to_end()
    sinks.close()
    ch = ClickHouseSink(f"chdb://{(state / 'clickhouse').resolve()}", "practiceflow")
    try:
        got, expected, problems = reconcile_clickhouse(sinks, types, ch)
    finally:
        ch.close()
    assert not problems, (problems, got, expected)
    print(
        f"\nday of {n_raw} raw messages ({len(copies)} ids); {kill_report}; outcome written twice for {doubled}; "
        f"{len(audit)} audit events; clickhouse {got}; topics {expected}; {time.monotonic() - started:.0f}s"
    )
