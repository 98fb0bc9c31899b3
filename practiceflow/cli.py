"""The ``practiceflow`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from practiceflow.settings import Settings


def _stack(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.localstack.stack import LocalStack, read_state, stop_recorded, wipe

    if args.action == "up":
        info = read_state(cfg.state_dir)
        if info:
            print(f"already running: kafka {info.bootstrap}, registry {info.registry_url}")
            return 0
        info = LocalStack(cfg.state_dir, nodes=args.nodes, registry=not args.no_registry).start()
        print(f"kafka {info.kafka_version} (KRaft, {args.nodes} node(s)) at {info.bootstrap}")
        print(f"schema registry at {info.registry_url}")
        print(f"started in {info.cold_start_seconds}s; logs under {info.root}")
        return 0
    if args.action == "down":
        print("stopped (data kept; `stack wipe` deletes it)" if stop_recorded(cfg.state_dir) else "no stack recorded")
        return 0
    if args.action == "wipe":
        deleted = wipe(cfg.state_dir)
        for path, size in deleted:
            print(f"deleted {path} ({size / 1e6:.1f} MB)")
        print(
            f"wiped {len(deleted)} item(s) under {cfg.state_dir} (the jar cache is kept)"
            if deleted
            else "nothing to wipe"
        )
        return 0
    info = read_state(cfg.state_dir)
    print(json.dumps(info.__dict__, indent=2) if info else "not running")
    return 0 if info else 1


def _schemas(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.schemas import typed_gen
    from practiceflow.schemas.avro_gen import export_all, load_parsed, record_names

    if args.action == "export":
        for path in export_all():
            print(path)
        print(typed_gen.export())  # the TypedDicts of the same records (schemas/typed.py)
        return 0
    for name in record_names():
        load_parsed(name)
    print(f"{len(record_names())} schemas parse")
    return 0


def _run_file(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.jobs.run_file import run_files
    from practiceflow.localstack.connect import endpoints

    files = [(args.feed, Path(f)) for f in args.files]
    with endpoints(cfg) as ep:
        report = run_files(cfg, ep.bootstrap, ep.registry_url, files, args.practice or cfg.default_practice_id)
    print(f"kafka {ep.kafka_version or '(configured)'} at {ep.bootstrap}; registry {ep.registry_url}")
    if ep.started_here:
        print(f"local stack (Kafka + schema registry) cold start: {ep.cold_start_seconds}s")
    for key in sorted(report.counts):
        print(f"  {key:40s} {report.counts[key]}")
    print(f"done in {report.seconds}s (first message through in {report.first_message_seconds}s)")
    failed = sum(v for k, v in report.counts.items() if k.endswith(".dead_lettered"))
    return 2 if failed and args.strict else 0


def _worker(args: argparse.Namespace, cfg: Settings) -> int:
    """Run the pipeline as a long-lived Faust worker (production shape)."""
    from practiceflow.localstack.connect import endpoints
    from practiceflow.sinks.clickhouse import ClickHouseSink
    from practiceflow.streams.app import Pipeline
    from practiceflow.streams.claimcheck import store_for
    from practiceflow.streams.fax import FaxOcr
    from practiceflow.streams.topics import create_topics

    with endpoints(cfg, autostart=False) as ep:
        create_topics(ep.bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
        pipeline = Pipeline(
            cfg,
            ep.bootstrap,
            ep.registry_url,
            sink=None if args.no_sink else ClickHouseSink.from_settings(cfg),
            web_port=cfg.web_port,
            # faxes are OCRed here (a child process per fax, page and time limits from the settings)
            fax_handler=FaxOcr.from_settings(cfg, store_for(cfg)),
        )
        pipeline.register_schemas()
        from practiceflow.streams.recovery import wait_for_coordinator
        from practiceflow.streams.runner import sink_group, start_sink

        # quietly, before any consumer asks (no COORDINATOR_NOT_AVAILABLE errors at start-up)
        wait_for_coordinator(ep.bootstrap, [pipeline.app.conf.id, sink_group(pipeline)])
        start_sink(pipeline, ep.bootstrap)  # a thread with its own consumer group (streams/clickhouse_sink.py)
        import faust

        from practiceflow.processors.hl7 import speedups_status

        print(f"practiceflow: HL7 hot path modules: {speedups_status()}", file=sys.stderr)  # compiled or python
        faust.Worker(pipeline.app, loglevel="INFO").execute_from_commandline()
    return 0


def _sink(args: argparse.Namespace, cfg: Settings) -> int:
    """Run the ClickHouse sink alone: commits offsets only after ClickHouse confirmed the rows."""
    import signal

    from practiceflow.localstack.connect import endpoints
    from practiceflow.sinks.clickhouse import ClickHouseSink
    from practiceflow.streams.clickhouse_sink import ClickHouseSinkConsumer
    from practiceflow.streams.recovery import librdkafka_settings, wait_for_coordinator
    from practiceflow.streams.serde import AvroSerde, registry_client
    from practiceflow.streams.topics import create_topics

    sink = ClickHouseSink.from_settings(cfg)  # applies the schema migrations (sinks/clickhouse_migrations)
    if args.migrate_only:
        print(f"practiceflow sink: ClickHouse {cfg.clickhouse_database} migrated", file=sys.stderr)
        sink.close()
        return 0
    with endpoints(cfg, autostart=False) as ep:
        create_topics(ep.bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
        consumer = ClickHouseSinkConsumer(
            ep.bootstrap,
            AvroSerde(registry_client(ep.registry_url)),
            cfg.topic_prefix,
            sink,
            group_id=args.group or f"{cfg.consumer_group}-clickhouse-sink",
            batch_size=args.batch_size,
            batch_seconds=args.batch_seconds,
            backoff_max=args.backoff_max,
            consumer_config=librdkafka_settings(cfg, "sink"),  # static membership: a restart resumes at once
        )
        wait_for_coordinator(ep.bootstrap, [consumer.group_id])  # no coordinator errors at start-up
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: consumer.stop(timeout=0))
        if args.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(args.metrics_port, addr=cfg.web_host)  # /metrics: practiceflow_sink_*
        print(f"practiceflow sink: group {consumer.group_id}, {len(consumer.topics)} topics", file=sys.stderr)
        consumer.run()
    return 0


def _dlq(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.localstack.connect import endpoints
    from practiceflow.streams import dlq
    from practiceflow.streams.producer import DurableProducer
    from practiceflow.streams.serde import AvroSerde, registry_client

    with endpoints(cfg, autostart=False) as ep:
        serde = AvroSerde(registry_client(ep.registry_url))
        if args.action == "list":
            letters = dlq.read_letters(ep.bootstrap, serde, cfg.topic_prefix, practice=args.practice, feed=args.feed)
            print(f"{'practice':20s} {'feed':7s} {'reason':32s} {'count':>6s}  newest")
            for practice, feed, reason, n, newest in dlq.summarize(letters):
                print(f"{practice:20s} {feed:7s} {reason:32s} {n:6d}  {newest}")
            print(f"\n{'id':18s} {'failed at':21s} {'stage':9s} {'reason':32s} {'bytes':>8s}  message id")
            for lt in sorted(letters, key=lambda x: x.value["failed_at"], reverse=True)[: args.limit]:
                d = dlq.describe(lt)
                print(
                    f"{d['id']:18s} {d['failed_at']:21s} {d['stage']:9s} {d['reason_code']:32s} "
                    f"{d['payload_bytes']:8d}  {d['message_id']}"
                )
            return 0
        if args.action == "show":
            for lt in dlq.get_letters(ep.bootstrap, serde, cfg.topic_prefix, args.ids):
                print(json.dumps(dlq.describe(lt, show_payload=args.show_payload), indent=2))
            return 0
        if args.ids:
            letters = dlq.get_letters(ep.bootstrap, serde, cfg.topic_prefix, args.ids)
        elif args.practice and args.feed:
            letters = dlq.read_letters(ep.bootstrap, serde, cfg.topic_prefix, practice=args.practice, feed=args.feed)
            letters = [lt for lt in letters if args.reason is None or lt.value["reason_code"] == args.reason]
        else:
            print("dlq redrive: give dead-letter ids, or --practice and --feed (optionally --reason)", file=sys.stderr)
            return 2
        chosen, partial = dlq.split_redrivable(dlq.newest_per_message(letters))
        if partial:
            print(
                f"skipped {len(partial)} dead letter(s) that keep only the head of their original "
                f"(no document-store copy; the sender must resend): {', '.join(lt.id for lt in partial)}",
                file=sys.stderr,
            )
        producer = DurableProducer(ep.bootstrap, cfg.topic_partitions, client_id="practiceflow-dlq")
        try:
            sent = dlq.redrive(producer, serde, cfg.topic_prefix, chosen)
        finally:
            producer.close()
        print(f"redriven {len(sent)} message(s) (audited): {', '.join(lt.id for lt in chosen)}")
        return 0


def _llm(args: argparse.Namespace, cfg: Settings) -> int:
    """The LLM layer: the cmd.llm executor, an endpoint check, the local test server."""
    import asyncio

    if args.action == "serve-local":
        from practiceflow.localstack.llm_server import main as serve

        return serve(["--host", args.host, "--port", str(args.port), "--mode", args.mode])
    if args.action == "check":
        return asyncio.run(_llm_check(cfg))
    return asyncio.run(_llm_executor(args, cfg))


async def _llm_check(cfg: Settings) -> int:
    """Say what the guard allows and whether the configured server answers /v1/models."""
    from practiceflow.processors.llm.guard import EndpointRefused
    from practiceflow.sinks.llm.client import LLMClient, LLMUnavailable

    llm = cfg.llm
    print(f"allow-list: {', '.join(llm.allowed_endpoints) or '(empty: no model is ever called)'}")
    if llm.base_url is None:
        print("llm.base_url not set: every LLM command is answered by the embedded fallback")
        return 0
    async with LLMClient(llm) as client:
        try:
            names = await client.models()
        except (EndpointRefused, LLMUnavailable) as exc:
            print(f"{llm.base_url}: {getattr(exc, 'code', '')} {exc}")
            return 1
    print(f"{llm.base_url}: serves {', '.join(names) or '(no model)'}; using {llm.model or (names or ['?'])[0]}")
    return 0


async def _llm_executor(args: argparse.Namespace, cfg: Settings) -> int:
    import asyncio
    import signal

    from practiceflow.localstack.connect import endpoints
    from practiceflow.sinks.llm.service import LLMService
    from practiceflow.streams.commands.llm import LLMCommandExecutor
    from practiceflow.streams.serde import AvroSerde, registry_client
    from practiceflow.streams.topics import create_topics

    with endpoints(cfg, autostart=False) as ep:
        create_topics(ep.bootstrap, cfg.topic_prefix, cfg.topic_partitions, cfg.topic_replication)
        service = LLMService.from_settings(cfg.llm)
        executor = LLMCommandExecutor(cfg, ep.bootstrap, AvroSerde(registry_client(ep.registry_url)), service)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(args.metrics_port, addr=cfg.web_host)  # practiceflow_llm_*
        target = cfg.llm.base_url or "embedded fallback only"
        print(f"practiceflow llm executor: group {executor.group_id}, model server {target}", file=sys.stderr)
        try:
            await executor.run(stop)
        finally:
            executor.close()
            await service.aclose()
    return 0


def _queue(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.jobs.queue import main as queue_main
    from practiceflow.localstack.connect import endpoints
    from practiceflow.streams.serde import AvroSerde, registry_client

    with endpoints(cfg, autostart=False) as ep:
        return queue_main(args, cfg, AvroSerde(registry_client(ep.registry_url)), ep.bootstrap)


def _ehr(args: argparse.Namespace, cfg: Settings) -> int:
    from practiceflow.jobs import ehr
    from practiceflow.localstack.connect import endpoints
    from practiceflow.streams.serde import AvroSerde, registry_client

    if args.action == "serve-local":
        return ehr.serve_local(args, cfg)
    with endpoints(cfg, autostart=False) as ep:
        return ehr.main(args, cfg, AvroSerde(registry_client(ep.registry_url)), ep.bootstrap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="practiceflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("stack", help="start/stop the embedded local Kafka + schema registry")
    p.add_argument("action", choices=["up", "down", "status", "wipe"], help="wipe: stop and delete all stack data")
    p.add_argument("--nodes", type=int, default=1, help="Kafka nodes (1, or 3 for the fault tests)")
    p.add_argument("--no-registry", action="store_true", help="skip the schema registry (serde uses mock://)")

    p = sub.add_parser("schemas", help="export the .avsc files from the models, or check them")
    p.add_argument("action", choices=["export", "check"])

    p = sub.add_parser("run-file", help="send files through the whole pipeline and report")
    p.add_argument("files", nargs="+")
    p.add_argument("--feed", default="hl7v2", choices=["hl7v2", "x12", "fhir", "portal"])
    p.add_argument("--practice")
    p.add_argument("--strict", action="store_true", help="exit 2 if anything was dead-lettered")

    p = sub.add_parser("worker", help="run the Faust worker (health and metrics on web_port)")
    p.add_argument("--no-sink", action="store_true", help="do not run the ClickHouse sink in this process")

    p = sub.add_parser("sink", help="run the ClickHouse sink alone (commits only after ClickHouse confirmed)")
    p.add_argument("--group", help="consumer group (default: <consumer_group>-clickhouse-sink, as in the worker)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--batch-seconds", type=float, default=0.5)
    p.add_argument("--backoff-max", type=float, default=30.0, help="longest wait between retries of a failed write")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    p.add_argument(
        "--migrate-only", action="store_true", help="apply the ClickHouse schema migrations and exit (deploy hook)"
    )

    p = sub.add_parser("dlq", help="dead letters: list, show (no PHI unless asked), redrive after a fix")
    dsub = p.add_subparsers(dest="action", required=True)
    d = dsub.add_parser("list", help="counts by practice, feed and reason (newest first), then the newest letters")
    d.add_argument("--practice")
    d.add_argument("--feed", choices=["hl7v2", "fhir", "fax", "portal", "x12"])
    d.add_argument("--limit", type=int, default=20, help="how many letters to list")
    d = dsub.add_parser("show", help="one or more letters by id (feed:partition:offset), without PHI")
    d.add_argument("ids", nargs="+")
    d.add_argument("--show-payload", action="store_true", help="also print the payload and reason text (PHI!)")
    d = dsub.add_parser("redrive", help="re-send letters to their raw topic (same path and de-duplication)")
    d.add_argument("ids", nargs="*")
    d.add_argument("--practice")
    d.add_argument("--feed", choices=["hl7v2", "fhir", "fax", "portal", "x12"])
    d.add_argument("--reason", help="only letters with this reason code")

    p = sub.add_parser("day", help="the main job: a synthetic practice day through every gateway")
    p.add_argument("--out", default=None, help="where to write the generated day (default: <state_dir>/day)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--patients", type=int, default=40)
    p.add_argument("--pilot", action="store_true", help="run the workflows in pilot mode beside scripted staff")
    p.add_argument("--no-ehr", action="store_true", help="skip writing the day's items to a local FHIR server")

    p = sub.add_parser("gateways", help="run the ingest gateways (MLLP, HTTP, folder drops)")

    p = sub.add_parser("fax", help="the fax classifier: train it (once per checkout; ./pf setup does)")
    p.add_argument("action", choices=["train"])

    p = sub.add_parser("queue", help="work queues: list, show with evidence, approve / edit / reject")
    from practiceflow.jobs.queue import add_arguments as queue_arguments

    queue_arguments(p)

    p = sub.add_parser("ehr", help="EHR write-back: work items -> FHIR Tasks, Task status -> decisions")
    from practiceflow.jobs.ehr import add_arguments as ehr_arguments

    ehr_arguments(p)

    p = sub.add_parser("audit", help="the audit trail: verify every practice's hash chain (topic and ClickHouse)")
    from practiceflow.jobs.audit import add_arguments as audit_arguments

    audit_arguments(p)

    p = sub.add_parser("pilot", help="pilot (shadow) mode: agreement with staff per workflow, kind, rule version")
    from practiceflow.jobs.pilot import add_arguments as pilot_arguments

    pilot_arguments(p)

    p = sub.add_parser("rules", help="validate the workflow rules in force (shipped + the practice's rules_dir)")
    p.add_argument("action", choices=["check"])

    p = sub.add_parser("eval", help="run a workflow's evaluation set and print its report")
    p.add_argument("name", help="which evaluation (see practiceflow/jobs/evals.py)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options of that evaluation")

    p = sub.add_parser("llm", help="the LLM layer: run the cmd.llm executor, check the endpoint, a local test server")
    lsub = p.add_subparsers(dest="action", required=True)
    d = lsub.add_parser("executor", help="answer cmd.llm commands (guarded client, fallback, idempotent)")
    d.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    lsub.add_parser("check", help="print the allow-list and ask the configured server for /v1/models")
    d = lsub.add_parser("serve-local", help="the local OpenAI-compatible test server (rule-based model, no GPU)")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument(
        "--mode", default="normal", help="normal | slow | fail | truncated | schema | wrong_spans | redirect"
    )

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    cfg = Settings()
    handlers = {
        "stack": _stack,
        "schemas": _schemas,
        "run-file": _run_file,
        "worker": _worker,
        "sink": _sink,
        "dlq": _dlq,
        "llm": _llm,
        "queue": _queue,
        "ehr": _ehr,
    }
    if args.cmd == "day":
        from practiceflow.jobs.day import main as day_main

        return day_main(args, cfg)
    if args.cmd == "fax":
        from pathlib import Path

        from practiceflow.processors.fax.classifier import load_or_train

        model = load_or_train(cfg.fax_model_dir or Path(cfg.state_dir) / "models")
        print(
            f"fax classifier {model.model_id}: {sum(model.training_counts.values())} training pages, "
            f"abstain below {model.threshold:.3f}"
        )
        return 0
    if args.cmd == "audit":
        from practiceflow.jobs.audit import main as audit_main

        return audit_main(args, cfg)
    if args.cmd == "pilot":
        from practiceflow.jobs.pilot import main as pilot_main

        return pilot_main(args, cfg)
    if args.cmd == "rules":
        from practiceflow.jobs.rules_check import main as rules_main

        return rules_main(args, cfg)
    if args.cmd == "eval":
        from practiceflow.jobs.evals import main as eval_main

        return eval_main(args, cfg)
    if args.cmd == "gateways":
        from practiceflow.jobs.gateways import main as gateways_main

        return gateways_main(args, cfg)
    return handlers[args.cmd](args, cfg)


if __name__ == "__main__":
    sys.exit(main())
