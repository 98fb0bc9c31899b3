"""``practiceflow day``: the main job. A synthetic practice day through every real gateway.

1. Generate the day (patients, HL7, FHIR, portal events, X12 files, faxes) and write it
   to ``<state_dir>/day/inputs`` so a person can inspect what was sent.
2. Start (or reuse) the local stack, create topics, register schemas, start the Faust
   pipeline in-process with ClickHouse (chdb) and the OCR step.
3. Start the gateways on loopback: MLLP, HTTP (FHIR, portal, fax, X12), folder drops.
4. Send every input the way its real sender would: MLLP frames over TCP, HTTP POSTs
   (bearer-token callers for FHIR, fax and X12; signed portal webhooks), files dropped
   in the watched folders. The day's bearer token is generated per run; one caller
   without credentials is refused (401, dead-lettered) to show the boundary.
5. Wait until the worker has handled everything the gateways accepted, then print a
   summary of what flowed where, per feed, and what landed in ClickHouse.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from practiceflow.jobs.day_scope import positions_now, since_clause, skip_earlier_runs
from practiceflow.localstack.connect import endpoints
from practiceflow.sampleday.generate import DayPlan, build_day, write_day
from practiceflow.sampleday.senders import MllpClient, ack_code, sign_portal
from practiceflow.settings import Settings
from practiceflow.sinks.clickhouse import ClickHouseSink
from practiceflow.sinks.docstore import open_document_store
from practiceflow.streams import catalog, runner
from practiceflow.streams.app import Pipeline
from practiceflow.streams.claimcheck import store_for
from practiceflow.streams.clickhouse_sink import sink_topics
from practiceflow.streams.fax import FaxOcr
from practiceflow.streams.gateways.base import GatewayCore
from practiceflow.streams.gateways.folder import FolderDrop
from practiceflow.streams.gateways.http import HttpGateway
from practiceflow.streams.gateways.mllp import MllpGateway
from practiceflow.streams.gateways.replay import ReplayGuard
from practiceflow.streams.producer import DurableProducer
from practiceflow.streams.serde import AvroSerde, registry_client
from practiceflow.streams.topics import create_topics

DEMO_SECRET = "demo-portal-secret"  # noqa: S105 - the sample day's portal webhook secret; real ones come from settings


@dataclass
class DayReport:
    sent: dict[str, int] = field(default_factory=dict)
    gateway: dict[str, int] = field(default_factory=dict)
    worker: dict[str, int] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)
    http: dict[str, int] = field(default_factory=dict)
    clickhouse: dict[str, int] = field(default_factory=dict)
    handoff_queues: list[tuple] = field(default_factory=list)
    fax_classes: list[tuple] = field(default_factory=list)
    dead_letter_reasons: list[tuple] = field(default_factory=list)
    denial_money: list[tuple] = field(default_factory=list)  # (category, denied, recoverable, written off, patient)
    authorizations: list[tuple] = field(default_factory=list)  # (work item kind, count): prior auth by state
    auth: dict[str, int] = field(default_factory=dict)
    pilot: dict[str, Any] = field(default_factory=dict)  # --pilot: scripted decisions, comparisons (day_pilot.py)
    llm_server: str = ""
    first_message_seconds: float | None = None
    seconds: float = 0.0
    drained: bool = False


def _clearinghouse_simulator(cfg: Settings) -> Any:
    """Start the local clearinghouse simulator for the day's eligibility checks (``clearinghouse``
    ``none`` or ``simulator``); the pipeline's executor then finds it on its port."""
    if cfg.clearinghouse != "simulator" or cfg.clearinghouse_url is not None:
        return None
    from practiceflow.localstack.clearinghouse import SimulatorProcess
    from practiceflow.localstack.ports import wait_for_port

    if wait_for_port("127.0.0.1", cfg.clearinghouse_sim_port, time.monotonic() + 0.3):
        return None  # one is running already
    return SimulatorProcess(cfg.clearinghouse_sim_port, latency_ms=40).start()


def _local_model_server(cfg: Settings) -> tuple[Settings, Any]:
    """The day's model server: the practice's own (``llm.base_url``) when set, else the local
    OpenAI-compatible test server (``practiceflow llm serve-local``), allow-listed for this run
    only, so the fax workflow's ``cmd.llm`` commands go through the real executor and guard."""
    if cfg.llm.base_url is not None:
        return cfg, None
    from practiceflow.localstack.llm_server import LocalLLMServer
    from practiceflow.processors.llm.config import LLMSettings

    server = LocalLLMServer().start()
    llm = cfg.llm.model_dump()
    llm.update(base_url=server.base_url, allowed_endpoints=[*cfg.llm.allowed_endpoints, server.origin])
    return cfg.model_copy(update={"llm": LLMSettings(**llm)}), server


def _fax_llm_done(pipeline: Pipeline) -> bool:
    """Every cmd.llm the fax step sent has its answer applied (streams/workflows/fax_llm.py)."""
    c = pipeline.counts
    return c.get("fax.llm.results", 0) + c.get("fax.llm.unlinked", 0) >= c.get("commands.llm", 0)


def _eligibility_done(pipeline: Pipeline) -> bool:
    """Every intake form reached the intake agent and every check it sent has its result."""
    c = pipeline.counts
    answered = c.get("intake.results", 0) + c.get("pilot.withheld.intake.eligibility", 0)  # pilot: never sent
    return c.get("intake.forms", 0) >= c.get("record.IntakeForm", 0) and answered >= c.get("intake.commands", 0)


def _refills_done(pipeline: Pipeline) -> bool:
    """Every normalized refill request has its triage item (the refill agent counts its classes)."""
    c = pipeline.counts
    return sum(v for k, v in c.items() if k.startswith("refill.")) >= c.get("record.RefillRequest", 0)


def _prior_auth_done(pipeline: Pipeline) -> bool:
    """Every 278 response is applied or parked, and every order the context folded was looked at."""
    c = pipeline.counts
    answered = c.get("prior_auth.responses_applied", 0) + c.get("prior_auth.responses_parked", 0)
    return answered >= c.get("record.AuthorizationResponse", 0) and (
        c.get("prior_auth.drafted", 0) > 0 or not c.get("record.AuthorizationResponse", 0)
    )


def _bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


async def _send_all(
    plan: DayPlan, mllp_port: int, http_port: int, drops: FolderDrop, report: DayReport, token: str
) -> None:
    base = f"http://127.0.0.1:{http_port}"
    practice = plan.practice_id
    bearer = {"Authorization": f"Bearer {token}"}
    async with MllpClient("127.0.0.1", mllp_port) as client:
        for msg in plan.mllp:
            ack = await client.send(msg)
            _bump(report.acks, ack_code(ack))
            _bump(report.sent, "hl7v2")
    for name, data in plan.hl7_batches:
        (drops.inbox(practice, "hl7v2") / name).write_bytes(data)
    async with aiohttp.ClientSession() as http:

        async def post(feed: str, url: str, **kw) -> None:
            async with http.post(url, **kw) as resp:
                await resp.read()
                _bump(report.http, f"{feed} {resp.status}")
                _bump(report.sent, feed)
                signed = "Authorization" in kw.get("headers", {}) or "X-Portal-Signature" in kw.get("headers", {})
                _bump(report.auth, "refused" if resp.status in (401, 403) else "authenticated" if signed else "other")

        fhir_json = {"Content-Type": "application/fhir+json"}
        for body in plan.fhir:
            await post("fhir", f"{base}/fhir/{practice}", data=body, headers={**fhir_json, **bearer})
        # a caller without credentials (a misconfigured system, or anyone who reached the port): refused
        await post("fhir", f"{base}/fhir/{practice}", data=plan.fhir[0], headers=fhir_json)
        for event, body, good in plan.portal:
            secret = (DEMO_SECRET if good else "not-the-secret").encode()
            await post("portal", f"{base}/portal/{practice}", data=body, headers=sign_portal(secret, body, event))
        for i in range(plan.portal_replays):
            event, body, _ = plan.portal[i]
            await post(
                "portal", f"{base}/portal/{practice}", data=body, headers=sign_portal(DEMO_SECRET.encode(), body, event)
            )
        for _name, data in plan.x12_upload:
            await post("x12", f"{base}/x12/{practice}", data=data, headers=bearer)
        for name, data, meta in plan.fax_upload:
            form = aiohttp.FormData()
            form.add_field("file", data, filename=name, content_type="image/tiff")
            for k, v in meta.items():
                form.add_field(k, v)
            await post("fax", f"{base}/fax/{practice}", data=form, headers=bearer)
    for name, data in plan.x12_drop:
        (drops.inbox(practice, "x12") / name).write_bytes(data)
        _bump(report.sent, "x12")
    for name, data in plan.fax_drop:
        (drops.inbox(practice, "fax") / name).write_bytes(data)
        _bump(report.sent, "fax")
    report.sent["hl7v2"] += sum(1 for _ in plan.hl7_batches)


async def run_day(
    cfg: Settings,
    bootstrap: str,
    registry_url: str,
    plan: DayPlan,
    *,
    timeout: float = 300.0,
    pilot: bool = False,
    staff_seed: int = 7,
    web_port: int | None = None,
    http_port: int = 0,
    hold: Callable[[], Awaitable[None]] | None = None,
) -> DayReport:
    """Run the day. ``web_port`` serves the worker's pages (/metrics, /healthz) and
    ``http_port`` is the HTTP gateway's (0: any free port); ``hold``, when given, is awaited
    once the day has drained, with the worker and the gateways still up (the metrics test
    scrapes them meanwhile: tests/deploy/test_metrics_stack.py)."""
    t0 = time.monotonic()
    report = DayReport()
    practice = plan.practice_id
    if pilot:  # every workflow of the day's practice in pilot (shadow) mode (README "Pilot mode")
        cfg = cfg.model_copy(update={"pilot": {**cfg.pilot, practice: ["*"]}})
    create_topics(bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
    # the stack keeps earlier runs' data: this run reads only its own inputs and sums only
    # its own rows (practiceflow/jobs/day_scope.py)
    app_id = f"{cfg.consumer_group}-day-{uuid.uuid4().hex[:6]}"
    sink_positions = positions_now(bootstrap, list(sink_topics(cfg.topic_prefix)))
    since, since_params = since_clause(sink_positions)
    sink = ClickHouseSink.from_settings(cfg)
    if practice not in cfg.fax_roster and "*" not in cfg.fax_roster:
        # the generated practice's names and providers, so its misdirected fax is recognised
        from practiceflow.sampleday.generate import DAY_PRACTICE_NAMES, DAY_PROVIDERS
        from practiceflow.settings import FaxRoster

        roster = FaxRoster(names=list(DAY_PRACTICE_NAMES), providers=list(DAY_PROVIDERS))
        cfg = cfg.model_copy(update={"fax_roster": {**cfg.fax_roster, practice: roster}})
    if cfg.clearinghouse == "none":
        # the day's data is synthetic and its stack local: its checks go to the local simulator
        cfg = cfg.model_copy(update={"clearinghouse": "simulator"})
    cfg, llm_server = _local_model_server(cfg)
    report.llm_server = f"local serve-local {cfg.llm.base_url}" if llm_server else str(cfg.llm.base_url)
    fax = FaxOcr.from_settings(cfg, store_for(cfg))
    pipeline = Pipeline(
        cfg,
        bootstrap,
        registry_url,
        app_id=app_id,
        sink=sink,
        fax_handler=fax,
        web_port=web_port,
    )
    pipeline.register_schemas()
    skip_earlier_runs(bootstrap, pipeline, sink_positions)  # before the worker and the sink join
    # the clearinghouse simulator the eligibility checks go to (no real clearinghouse here)
    sim = _clearinghouse_simulator(cfg)
    await runner.start(pipeline)

    producer = DurableProducer(bootstrap, cfg.topic_partitions)
    docstore = open_document_store(cfg.documents_uri, **cfg.document_store_options)
    core = GatewayCore(
        producer,
        AvroSerde(registry_client(registry_url)),
        cfg.topic_prefix,
        name="day",
        docstore=docstore,
        claim_check_bytes=cfg.claim_check_bytes,
    )
    mllp = MllpGateway(core, practice, port=0)
    token = secrets.token_urlsafe(32)  # the day's FHIR/fax/X12 sender credential, new every run
    http = HttpGateway(
        core,
        {practice},
        docstore,
        tokens={practice: token},
        portal_secrets={practice: DEMO_SECRET},
        replay=ReplayGuard(cfg.state_dir / "day" / f"replay-{uuid.uuid4().hex[:8]}.jsonl"),
        port=http_port,
    )
    drops = FolderDrop(core, cfg.state_dir / "day" / "drop", {practice}, docstore, settle_seconds=0.2, interval=0.5)
    await mllp.start()
    await http.start()
    await drops.start()
    try:
        await _send_all(plan, mllp.port, http.port, drops, report, token)

        def accepted() -> int:
            return sum(v for k, v in core.stats.items() if k.endswith(".accepted"))

        def inboxes_empty() -> bool:
            return not any(any(drops.inbox(practice, f).iterdir()) for f in ("hl7v2", "x12", "fax"))

        await runner.wait_for(lambda: pipeline.handled() >= 1, timeout)
        report.first_message_seconds = round(time.monotonic() - t0, 2)
        report.drained = await runner.wait_for(lambda: inboxes_empty() and pipeline.handled() >= accepted(), timeout)
        await runner.wait_for(lambda: _eligibility_done(pipeline), 120)
        await runner.wait_for(lambda: _refills_done(pipeline), 120)
        await runner.wait_for(lambda: _fax_llm_done(pipeline), 120)
        await runner.wait_for(lambda: _prior_auth_done(pipeline), 60)
        await runner.wait_for(pipeline.sink_caught_up, 60)
        await _wait_denials(pipeline, sink, practice)
        if pilot:
            from practiceflow.jobs.day_pilot import scripted_staff

            report.pilot = await scripted_staff(pipeline, producer, practice, staff_seed, sink, since, since_params)
        if hold is not None:
            await hold()
    finally:
        if sim is not None:
            sim.stop()
        if llm_server is not None:
            llm_server.stop()
        await drops.stop()
        await http.stop()
        await mllp.stop()
        producer.close()
        await runner.stop(pipeline)
        fax.close()
    report.gateway = dict(core.stats)
    report.worker = dict(pipeline.counts)
    for table in (
        "records",
        "observations",
        "handoff_items",
        "dead_letters",
        "flow_events",
        "audit_events",
        "denial_money",
        "pilot_agreement",
    ):
        report.clickhouse[table] = sink.query(
            # the table name comes from the literal tuple above; the practice id is a bound parameter
            f"SELECT count() FROM {{db}}.{table} FINAL WHERE practice_id = %(p)s AND {since}",  # noqa: S608
            {"p": practice, **since_params},
        )[0][0]
    where = f"WHERE practice_id = %(p)s AND {since} GROUP BY ALL ORDER BY ALL"  # since_clause binds its values
    params = {"p": practice, **since_params}
    report.fax_classes = sink.query(
        "SELECT doc_class, queue, count() FROM {db}.fax_classifications FINAL " + where,  # noqa: S608
        params,
    )
    report.handoff_queues = sink.query(
        "SELECT queue, workflow, priority, count() FROM {db}.handoff_items FINAL " + where,  # noqa: S608
        params,
    )
    report.dead_letter_reasons = sink.query(
        "SELECT feed, stage, reason_code, count() FROM {db}.dead_letters FINAL " + where,  # noqa: S608
        params,
    )
    report.denial_money = sink.query(
        "SELECT category, round(sum(denied), 2), round(sum(recoverable), 2), round(sum(written_off), 2),"  # noqa: S608
        " round(sum(patient_responsibility), 2), count() FROM {db}.denial_money FINAL"
        " WHERE practice_id = %(p)s AND " + since + " GROUP BY category ORDER BY category",
        params,
    )
    report.authorizations = sink.query(
        "SELECT kind, count() FROM {db}.handoff_items FINAL"  # noqa: S608
        " WHERE practice_id = %(p)s AND workflow = 'prior_auth' AND " + since + " GROUP BY kind ORDER BY kind",
        params,
    )
    sink.close()
    report.seconds = round(time.monotonic() - t0, 1)
    return report


async def _wait_denials(pipeline: Pipeline, sink: ClickHouseSink, practice: str, timeout: float = 60.0) -> bool:
    """Until the denial agent has stepped every 835 claim and its money is in ClickHouse."""
    c = pipeline.counts

    def stepped() -> bool:
        return c.get("denials.adjudications", 0) >= c.get("record.ClaimAdjudication", 0)

    def sunk() -> bool:
        rows = sink.query("SELECT count() FROM {db}.denial_money WHERE practice_id = %(p)s", {"p": practice})[0][0]
        return rows >= c.get("denials.ledger_entries", 0)

    return await runner.wait_for(stepped, timeout) and await runner.wait_for(sunk, timeout)


def print_report(report: DayReport, plan: DayPlan, ep) -> None:
    print(
        f"practiceflow: sample practice day {plan.day} for '{plan.practice_id}' ({len(plan.people)} synthetic patients)"
    )
    print(f"  kafka {ep.kafka_version or '(configured)'} at {ep.bootstrap}; schema registry {ep.registry_url}")
    print()
    print(
        f"  {'feed':8s} {'sent':>6s} {'accepted':>9s} {'rejected@gw':>12s} {'normalized':>11s} "
        f"{'dead-letter':>12s} {'duplicate':>10s}"
    )
    g, w = report.gateway, report.worker
    for feed in catalog.FEEDS:
        print(
            f"  {feed:8s} {report.sent.get(feed, 0):6d} {g.get(f'{feed}.accepted', 0):9d} "
            f"{g.get(f'{feed}.rejected', 0):12d} {w.get(f'{feed}.normalized', 0):11d} "
            f"{w.get(f'{feed}.dead_lettered', 0):12d} {w.get(f'{feed}.duplicate', 0):10d}"
        )
    print("  (hl7v2 'sent' counts MLLP messages plus batch files; a batch's messages are accepted one by one)")
    print(f"  HL7 control ids reused with new content (processed and flagged): {w.get('hl7v2.control_id_reused', 0)}")
    print(f"\n  MLLP ACKs: {report.acks}   HTTP answers: {report.http}")
    print(
        f"  HTTP callers: {report.auth.get('authenticated', 0)} authenticated (bearer token or portal HMAC), "
        f"{report.auth.get('refused', 0)} refused (no or wrong credential: 401, dead-lettered)"
    )
    checked = {k.split(".")[0]: v for k, v in g.items() if k.endswith(".claim_checked")}
    print(f"  large inputs carried through the document store (claim check): {checked or 'none'}")
    records = {k.removeprefix("record."): v for k, v in w.items() if k.startswith("record.")}
    print(f"\n  normalized records: {dict(sorted(records.items()))}")
    print("\n  handoff items (queue / workflow / priority: count):")
    for q, wf, pr, n in report.handoff_queues:
        print(f"    {q} / {wf} / {pr}: {n}")
    print("\n  faxed documents (class / routed to: count):")
    for cls, queue, n in report.fax_classes:
        print(f"    {cls} / {queue}: {n}")
    sources = {k.removeprefix("fax.llm.source."): v for k, v in w.items() if k.startswith("fax.llm.source.")}
    routed = {k.removeprefix("fax.llm.routed."): v for k, v in w.items() if k.startswith("fax.llm.routed.")}
    print(
        f"  language model ({report.llm_server}, allow-listed): {w.get('commands.llm', 0)} cmd.llm asked, "
        f"{w.get('fax.llm.results', 0)} answered (LLM calls {sources.get('model', 0)}, "
        f"fallbacks {sources.get('fallback', 0)}, none {sources.get('none', 0)}); "
        f"span-check drops {w.get('fax.llm.dropped_fields', 0)}; items after the answer by queue {dict(sorted(routed.items()))}"
    )
    triage = {k.removeprefix("refill."): v for k, v in w.items() if k.startswith("refill.")}
    print(f"  refill triage (class: count): {dict(sorted(triage.items())) or 'none'}")
    outcomes = {k.split(".", 2)[2]: v for k, v in w.items() if k.startswith("intake.outcome.")}
    reasons = {k.split(".", 2)[2]: v for k, v in w.items() if k.startswith("intake.reason.")}
    print(
        f"\n  eligibility checks (clearinghouse simulator): {w.get('intake.forms', 0)} intake forms, "
        f"{w.get('intake.commands', 0)} 270s sent, outcomes {dict(sorted(outcomes.items()))}"
    )
    print(f"    by reason: {dict(sorted(reasons.items()))}")
    actions = {k.removeprefix("denials.action."): v for k, v in w.items() if k.startswith("denials.action.")}
    print(f"\n  denials (835 follow-up): {w.get('denials.adjudications', 0)} claims, drafts by action {actions}")
    print("    category: denied / recoverable / written off / patient responsibility (US$, entries)")
    for cat, denied, recoverable, written_off, patient, n in report.denial_money:
        print(f"    {cat}: {denied:,.2f} / {recoverable:,.2f} / {written_off:,.2f} / {patient:,.2f} ({n})")
    drafted = w.get("prior_auth.drafted", 0)
    states = {
        str(k).removeprefix("prior_auth.").replace("sign_off", "awaiting_sign_off"): n for k, n in report.authorizations
    }
    # a 271's "authorization required" item is not a drafted request (review s20 N5): its own line
    payer_requires = states.pop("payer_requires", 0)
    print(f"\n  prior authorizations drafted by state: {drafted} drafted, {states or 'none'}")
    if payer_requires:
        print(f"    payer says authorization is required (271 EB11, no request drafted yet): {payer_requires}")
    print("\n  dead letters (feed / stage / reason: count):")
    for feed, stage, reason, n in report.dead_letter_reasons:
        print(f"    {feed} / {stage} / {reason}: {n}")
    if report.pilot:
        from practiceflow.jobs.day_pilot import print_pilot

        print_pilot(report.pilot)
    print(f"\n  ClickHouse rows: {report.clickhouse}")
    print(
        f"\n  first message through the pipeline {report.first_message_seconds}s after start; "
        f"whole day in {report.seconds}s; drained: {report.drained}"
    )


def new_run_id() -> str:
    """Each ``practiceflow day`` is a run of its own: a second day on a kept stack with the same seed
    sends new fax files (``build_day(run_id=...)``), so the language-model commands about them are new
    commands. With the first day's files, their command ids (a hash of the document and the question)
    equal the first day's, the ``cmd.llm`` executor (rightly: a replay never calls the model again nor
    answers twice) skips them as answered, and this run's workflow, which reads ``cmd.results`` from
    its own start (``day_scope.skip_earlier_runs``), waited for answers that never came."""
    return uuid.uuid4().hex[:8]


def main(args: argparse.Namespace, cfg: Settings) -> int:
    run_id = new_run_id()
    plan = build_day(seed=args.seed, n_patients=args.patients, practice_id=cfg.default_practice_id, run_id=run_id)
    out = write_day(plan, Path(args.out) if args.out else cfg.state_dir / "day" / "inputs")
    print(f"generated the day's inputs (run {run_id}) under {out}")
    t0 = time.monotonic()
    from practiceflow.jobs.day_ehr import LocalEhr, write_back_day

    if args.pilot:  # the write-back below must see the pilot too: it writes nothing for piloted workflows
        cfg = cfg.model_copy(update={"pilot": {**cfg.pilot, plan.practice_id: ["*"]}})

    ehr = None if getattr(args, "no_ehr", False) else LocalEhr(cfg)  # starts while the day runs
    if ehr is not None:  # the worker must know the practice has an EHR, or it answers signed writes no_ehr
        cfg = cfg.model_copy(update={"ehr_fhir": {**cfg.ehr_fhir, plan.practice_id: ehr.target(plan.practice_id)}})
    try:
        with endpoints(cfg) as ep:
            if ep.started_here:
                print(f"started the local stack in {ep.cold_start_seconds}s")
            report = asyncio.run(
                run_day(cfg, ep.bootstrap, ep.registry_url, plan, pilot=args.pilot, staff_seed=args.seed)
            )
            print_report(report, plan, ep)
            serde = AvroSerde(registry_client(ep.registry_url))
            print(write_back_day(ehr, cfg, serde, ep.bootstrap, plan.practice_id))
    finally:
        if ehr is not None:
            ehr.stop()
    print(f"\n  total wall time {time.monotonic() - t0:.1f}s")
    return 0 if report.drained else 1
