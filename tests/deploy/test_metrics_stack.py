"""The dashboards and alert rules against a real Prometheus scraping the demo.

A small practice day runs through the real broker, the worker (its /metrics page) and the
gateways (the HTTP gateway's /metrics); while it holds, the cmd.llm executor answers two
commands against the local OpenAI-compatible server and a person takes a fax work item with
``practiceflow queue`` (the fax workflow is piloted, so that decision is compared with the proposal). A real Prometheus scrapes both endpoints every second from before the
first message. Then every panel query of every committed dashboard must return data (a finite
value; the consumer-lag panel included), and
``promtool`` checks the alert rules, unit-tests them, and lints the exported metric names.

The binaries: the ones built from the Go module when present, else Debian's ``prometheus``
package (``./pf setup`` installs it: /usr/bin/prometheus and /usr/bin/promtool, 2.42), which is
what CI runs. Without either the tests skip and say why on a workstation, and fail under
``CI=true``: a check CI cannot run must not pass there as a skip.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.llm_fixtures import llm_server, llm_settings, set_mode

__all__ = ["llm_server"]

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = REPO_ROOT / ".stack" / "cache" / "bin"
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
CHART_DASHBOARDS = REPO_ROOT / "deploy" / "helm" / "practiceflow" / "dashboards"
RULES = REPO_ROOT / "deploy" / "prometheus"


DEBIAN_BIN = Path("/usr/bin")  # Debian's prometheus package (APT_PACKAGES in ./pf)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _binary(name: str) -> Path | None:
    """The one built from the Go module (``PRACTICEFLOW_BUILD_PROMETHEUS=1 ./pf setup``) if there is
    one, else one on PATH, else Debian's (``./pf setup`` installs the ``prometheus`` package:
    prometheus + promtool in /usr/bin)."""
    for candidate in (BIN / name, shutil.which(name), DEBIAN_BIN / name):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


PROMETHEUS, PROMTOOL = _binary("prometheus"), _binary("promtool")
_missing = [name for name, p in (("prometheus", PROMETHEUS), ("promtool", PROMTOOL)) if p is None]
_WHY = (
    f"{' and '.join(_missing)} not found: `./pf setup` installs Debian's prometheus package; or build them "
    "from the Go module with PRACTICEFLOW_BUILD_PROMETHEUS=1 ./pf setup (over an hour on 2 busy cores)"
)
if _missing:  # say why on the console too, not only in the skip summary
    print(f"tests/deploy/test_metrics_stack.py: {_WHY}", file=sys.stderr)
# skip on a workstation without them; under CI=true run, and fail in _require
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not IN_CI, reason=_WHY)
needs_prometheus = pytest.mark.skipif(bool(_missing) and not IN_CI, reason=_WHY)


def _require(*names: str) -> None:
    """Under CI the binaries are part of the setup: their absence is a failure, not a skip."""
    if any(name in _missing for name in names):
        pytest.fail(f"CI=true: {_WHY}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) of every panel target in the committed dashboards."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        model = json.loads(path.read_text())
        for panel in model["panels"]:
            for target in panel.get("targets") or []:
                out.append((path.stem, panel["title"], target["expr"]))
    return out


def concrete(expr: str) -> str:
    """A panel's query as Grafana would send it with every variable at "All"."""
    return (
        # the windows span the whole demo (a few minutes): the question is whether the query
        # finds the series, not how Grafana sizes its step
        expr.replace("$__rate_interval", "10m")
        .replace("$__range", "20m")
        .replace("$practice", ".*")
        .replace("$workflow", ".*")
    )


def test_committed_dashboards_are_generated_from_the_code():
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in DASHBOARDS.glob("*.json"))
    assert names == [
        "practiceflow-fleet.json",
        "practiceflow-pilot.json",
        "practiceflow-practice.json",
        "practiceflow-workflow.json",
    ]
    assert names == sorted(p.name for p in CHART_DASHBOARDS.glob("*.json"))
    for _, _, expr in panel_queries():
        assert re.search(r"practiceflow_[a-z_]+", expr), expr


@needs_promtool
def test_alert_rules_pass_promtool():
    _require("promtool")
    check = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
    unit = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=RULES
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


@needs_prometheus
@pytest.mark.broker
@pytest.mark.timeout(1800)  # the day under load: minutes; see README
def test_every_dashboard_panel_returns_data_from_a_real_prometheus(cfg, stack, llm_server, tmp_path):
    _require("prometheus", "promtool")
    from practiceflow.jobs.day import run_day
    from practiceflow.jobs.queue import main as queue_main
    from practiceflow.jobs.run_file import raw_record
    from practiceflow.sampleday.generate import build_day
    from practiceflow.sinks.llm.service import LLMService
    from practiceflow.streams.commands.llm import LLMCommandExecutor
    from practiceflow.streams.producer import DurableProducer
    from practiceflow.streams.serde import AvroSerde, registry_client
    from practiceflow.streams.workitem_reader import read_work_items
    from tests.streams.test_llm_commands import command, drive, send

    web_port, http_port, prom_port = _free_port(), _free_port(), _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: practiceflow-worker\n    static_configs: [{{targets: ['127.0.0.1:{web_port}']}}]\n"
        f"  - job_name: practiceflow-gateways\n    static_configs: [{{targets: ['127.0.0.1:{http_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> list[dict]:
        body = json.loads(_get(f"{api}/query?{urllib.parse.urlencode({'query': expr})}"))
        assert body["status"] == "success", body
        return body["data"]["result"]

    set_mode(llm_server, "normal")
    # the fax workflow runs in pilot mode: the person's decision below is compared with the proposal,
    # so the pilot-agreement dashboard has data (an "assign" of a fax item is an agreement)
    cfg = cfg.model_copy(update={"llm": llm_settings(llm_server), "pilot": {"clinic-metrics": ["fax"]}})
    plan = build_day(seed=5, n_patients=4, practice_id="clinic-metrics")
    serde = AvroSerde(registry_client(stack.registry_url))
    seen: dict[str, object] = {}

    async def hold() -> None:
        # two more fax commands; the worker's own LLM executor (started because llm.base_url is set)
        # may answer them first, in which case this one finds them answered (replayed)
        service = LLMService.from_settings(cfg.llm)
        executor = LLMCommandExecutor(cfg, stack.bootstrap, serde, service, group_id="metrics-test-llm")
        try:
            await send(stack, cfg, serde, [command(plan.practice_id, "m1"), command(plan.practice_id, "m2")])
            await drive(executor, lambda t: sum(t.outcomes.values()) + t.replayed >= 2)
        finally:
            executor.close()
            await service.aclose()
        # one input that cannot be normalized (an HL7 message without its control id): a dead letter,
        # so the dead-letter panels have a series (a labelled counter exists only once it is used)
        raw_topic = f"{cfg.topic_prefix}.raw.hl7v2"
        bad = raw_record(plan.practice_id, "hl7v2", b"MSH|^~\\&|LAB|ACME||PF|20261201120000||ORU^R01||P|2.5.1\r")
        producer = DurableProducer(stack.bootstrap, cfg.topic_partitions, client_id="metrics-test-dlq")
        try:
            data = serde.encode(f"{raw_topic}-value", "RawMessage", bad)
            await producer.send_async(raw_topic, f"{plan.practice_id}/{bad['message_id']}", data, plan.practice_id)
        finally:
            producer.close()
        # a person takes one open work item (the decisions agent applies it)
        items = await asyncio.to_thread(read_work_items, stack.bootstrap, serde, cfg.topic_prefix, plan.practice_id)
        item = next(i for i in items.values() if i.get("state", "open") == "open" and i["workflow"] == "fax")
        args = argparse.Namespace(
            practice=plan.practice_id, actor="metrics-test", role=None, action="decide", item_id=item["item_id"]
        )
        args.option, args.edit, args.comment = "assign", [], None
        assert await asyncio.to_thread(queue_main, args, cfg, serde, stack.bootstrap) == 0
        # wait until Prometheus has the decision and a few scrapes after it
        for _ in range(120):
            if await asyncio.to_thread(query, "sum(practiceflow_decisions_total)") and await asyncio.to_thread(
                query, 'sum(practiceflow_pilot_items{verdict="agree"}) > 0'
            ):
                break
            await asyncio.sleep(1)
        await asyncio.sleep(5)
        seen["metrics_text"] = await asyncio.to_thread(_get, f"http://127.0.0.1:{web_port}/metrics")
        seen["targets"] = await asyncio.to_thread(query, "up")
        seen["results"] = {(d, t, e): await asyncio.to_thread(query, concrete(e)) for d, t, e in panel_queries()}

    try:
        report = asyncio.run(
            run_day(
                cfg,
                stack.bootstrap,
                stack.registry_url,
                plan,
                timeout=300,
                web_port=web_port,
                http_port=http_port,
                hold=hold,
            )
        )
    finally:
        prom.terminate()
        prom.wait(30)
    assert report.drained

    up = {r["metric"]["job"]: r["value"][1] for r in seen["targets"]}  # type: ignore[union-attr]
    assert up == {"practiceflow-worker": "1", "practiceflow-gateways": "1"}, up
    empty = []
    for (dash, title, expr), result in seen["results"].items():  # type: ignore[union-attr]
        values = [float(r["value"][1]) for r in result]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{dash} / {title}: {expr} -> {result}")
    assert not empty, "panels without data:\n" + "\n".join(empty)

    # consumer lag is set by a scrape alone (no /healthz call in this test), per partition
    text = seen["metrics_text"].decode()  # type: ignore[union-attr]
    # (labels in either order: prometheus-client writes them sorted, partition first)
    lag = re.findall(r"^practiceflow_consumer_lag\{([^}]*)\} (\S+)$", text, re.M)
    assert any(re.search(r'topic="[^"]+\.raw\.hl7v2"', labels) and 'partition="' in labels for labels, _ in lag), lag
    # the day dead-letters a few inputs: the depth gauge reads them from the topics
    assert re.search(r'^practiceflow_dead_letter_depth\{feed="hl7v2"\} [1-9]', text, re.M)
    # every exported name passes promtool's lint (conventional names and units)
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
