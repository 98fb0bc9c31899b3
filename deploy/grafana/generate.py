"""Grafana dashboards as code: writes the committed JSON that Grafana and the Helm chart load.

    .venv/bin/python deploy/grafana/generate.py           # (re)write the JSON files
    .venv/bin/python deploy/grafana/generate.py --check   # exit 1 if a committed file is stale

Built with Grafana's own builder library (``grafana-foundation-sdk`` on PyPI, a dev
dependency), so the JSON follows Grafana's schema instead of hand-written dictionaries.
Each dashboard is written twice: under ``deploy/grafana/dashboards/`` (import them by hand
or with any provisioning) and under the chart's ``dashboards/`` folder, which the chart's
ConfigMap reads (Helm reads files only from inside a chart).

Every query uses only metrics the services export (README "Metrics and dashboards");
tests/deploy/test_metrics_stack.py runs the demo, scrapes it with a real Prometheus and
asserts that every panel's query returns data (a pilot runs in that demo, so the pilot
dashboard's panels are checked too).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

ROOT = Path(__file__).resolve().parents[2]
OUT_DIRS = (ROOT / "deploy" / "grafana" / "dashboards", ROOT / "deploy" / "helm" / "practiceflow" / "dashboards")
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"


def _query(expr: str, legend: str, ref: str) -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)


def graph(title: str, unit: str, *queries: tuple[str, str], description: str = "") -> timeseries.Panel:
    """A time-series panel; ``queries`` are (PromQL, legend) pairs."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DS).height(8).span(12)
    if description:
        panel = panel.description(description)
    for i, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + i)))
    return panel


def single(title: str, unit: str, expr: str, description: str = "") -> stat.Panel:
    """A single-number panel (the latest value)."""
    panel = stat.Panel().title(title).unit(unit).datasource(DS).height(4).span(6)
    if description:
        panel = panel.description(description)
    return panel.with_target(_query(expr, "", "A").instant())


def p95(metric: str, by: str) -> str:
    return f"histogram_quantile(0.95, sum by (le, {by}) (rate({metric}_bucket[{RATE}])))"


def _base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    ds = dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["practiceflow"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(ds)
    )


def _label_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DS)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def fleet() -> dashboard.Dashboard:
    d = _base("pf-fleet", "practiceflow: fleet overview", "Every service of a region: what flows, how fast, what waits")
    d = d.with_row(dashboard.Row("Inputs"))
    d = d.with_panel(
        graph(
            "Inputs accepted per feed",
            "reqps",
            (f"sum by (feed) (rate(practiceflow_gateway_accepted_total[{RATE}]))", "{{feed}}"),
        )
    )
    d = d.with_panel(
        graph(
            "Inputs rejected per feed and reason",
            "reqps",
            (
                f"sum by (feed, reason_code) (rate(practiceflow_gateway_rejected_total[{RATE}]))",
                "{{feed}} {{reason_code}}",
            ),
        )
    )
    d = d.with_panel(
        graph(
            "Worker outcomes per feed",
            "ops",
            (f"sum by (feed, stage) (rate(practiceflow_messages_total[{RATE}]))", "{{feed}} {{stage}}"),
        )
    )
    d = d.with_panel(
        graph(
            "Dead letters per feed and reason",
            "ops",
            (f"sum by (feed, reason_code) (rate(practiceflow_dead_letters_total[{RATE}]))", "{{feed}} {{reason_code}}"),
        )
    )
    d = d.with_row(dashboard.Row("Latency (p95)"))
    d = d.with_panel(
        graph(
            "Gateway: receipt to durable write",
            "s",
            (p95("practiceflow_gateway_seconds", "feed"), "{{feed}}"),
        )
    )
    d = d.with_panel(
        graph("Worker: normalize one message", "s", (p95("practiceflow_normalize_seconds", "feed"), "{{feed}}"))
    )
    d = d.with_panel(
        graph(
            "Receipt to outputs confirmed",
            "s",
            (p95("practiceflow_pipeline_seconds", "feed"), "{{feed}}"),
            description="Gateway receipt to the worker's normalized outputs or dead letter confirmed by Kafka",
        )
    )
    d = d.with_panel(graph("OCR per fax", "s", (p95("practiceflow_ocr_seconds", "instance"), "{{instance}}")))
    d = d.with_row(dashboard.Row("Backlog"))
    d = d.with_panel(
        graph(
            "Consumer lag per topic",
            "short",
            ("sum by (topic) (practiceflow_consumer_lag)", "{{topic}}"),
            description="High-water mark minus the group's committed offset (or the offset taken), per input topic",
        )
    )
    d = d.with_panel(
        graph(
            "Dead-letter depth",
            "short",
            ("max by (feed) (practiceflow_dead_letter_depth)", "{{feed}}"),
            description="Letters retained in each dead-letter topic; `practiceflow dlq list` shows them",
        )
    )
    d = d.with_panel(single("Stalled workers", "short", "sum(practiceflow_worker_stalled)"))
    d = d.with_panel(single("Sink retrying a batch", "short", "max(practiceflow_sink_failing)"))
    d = d.with_row(dashboard.Row("Outputs"))
    d = d.with_panel(
        graph(
            "ClickHouse rows per table",
            "rowsps",
            (f"sum by (table) (rate(practiceflow_sink_rows_total[{RATE}]))", "{{table}}"),
        )
    )
    d = d.with_panel(
        graph(
            "Commands per kind and outcome",
            "ops",
            (f"sum by (kind, outcome) (rate(practiceflow_command_results_total[{RATE}]))", "{{kind}} {{outcome}}"),
        )
    )
    d = d.with_panel(
        graph(
            "OCR pages per status",
            "ops",
            (f"sum by (status) (rate(practiceflow_ocr_pages_total[{RATE}]))", "{{status}}"),
        )
    )
    return d


def practice() -> dashboard.Dashboard:
    d = _base("pf-practice", "practiceflow: per practice", "One practice (or several): its inputs and its work queues")
    d = d.with_variable(
        _label_variable("practice", "Practice", "label_values(practiceflow_practice_inputs_total, practice)")
    )
    sel = 'practice=~"$practice"'
    d = d.with_panel(
        graph(
            "Inputs per feed and outcome",
            "reqps",
            (
                f"sum by (practice, feed, outcome) (rate(practiceflow_practice_inputs_total{{{sel}}}[{RATE}]))",
                "{{practice}} {{feed}} {{outcome}}",
            ),
        )
    )
    d = d.with_panel(
        graph(
            "Open work items per workflow",
            "short",
            (
                f'sum by (practice, workflow) (practiceflow_work_items{{{sel}, state="open"}})',
                "{{practice}} {{workflow}}",
            ),
        )
    )
    d = d.with_panel(
        graph(
            "Work items per state",
            "short",
            (f"sum by (practice, state) (practiceflow_work_items{{{sel}}})", "{{practice}} {{state}}"),
        )
    )
    d = d.with_panel(
        single(
            "Inputs rejected (range)",
            "short",
            f'sum(increase(practiceflow_practice_inputs_total{{{sel}, outcome="rejected"}}[$__range]))',
        )
    )
    return d


def workflow() -> dashboard.Dashboard:
    d = _base(
        "pf-workflow", "practiceflow: per workflow", "What the workflows produce, what staff decide, what it costs"
    )
    d = d.with_variable(_label_variable("workflow", "Workflow", "label_values(practiceflow_work_items, workflow)"))
    sel = 'workflow=~"$workflow"'
    d = d.with_panel(
        graph(
            "Work items per state",
            "short",
            (f"sum by (workflow, state) (practiceflow_work_items{{{sel}}})", "{{workflow}} {{state}}"),
        )
    )
    d = d.with_panel(
        graph(
            "Work items written per queue",
            "ops",
            (
                f"sum by (workflow, queue) (rate(practiceflow_handoff_items_total{{{sel}}}[{RATE}]))",
                "{{workflow}} {{queue}}",
            ),
        )
    )
    d = d.with_panel(
        graph(
            "Staff decisions per option",
            "short",
            (
                f"sum by (workflow, option, result) (increase(practiceflow_decisions_total{{{sel}}}[$__range]))",
                "{{workflow}} {{option}} {{result}}",
            ),
        )
    )
    d = d.with_row(dashboard.Row("Fax classifier"))
    d = d.with_panel(
        graph(
            "Pages classified per label",
            "short",
            ("sum by (label) (increase(practiceflow_fax_pages_classified_total[$__range]))", "{{label}}"),
        )
    )
    d = d.with_panel(single("Classifier abstain rate", "percentunit", "max(practiceflow_fax_abstain_rate)"))
    d = d.with_row(dashboard.Row("LLM"))
    d = d.with_panel(
        graph(
            "LLM calls per outcome",
            "short",
            ("sum by (outcome) (increase(practiceflow_llm_calls_total[$__range]))", "{{outcome}}"),
        )
    )
    d = d.with_panel(
        graph(
            "LLM call latency (p95)",
            "s",
            (f"histogram_quantile(0.95, sum by (le) (rate(practiceflow_llm_call_seconds_bucket[{RATE}])))", "p95"),
        )
    )
    return d


def pilot() -> dashboard.Dashboard:
    d = _base(
        "pf-pilot",
        "practiceflow: pilot agreement",
        "Pilot (shadow) mode: how often staff did what the agent proposed, and the minutes it would save",
    )
    d = d.with_variable(_label_variable("practice", "Practice", "label_values(practiceflow_pilot_items, practice)"))
    sel = 'practice=~"$practice"'
    d = d.with_panel(
        graph(
            "Agreement per workflow",
            "percentunit",
            (
                f'sum by (workflow) (practiceflow_pilot_items{{{sel}, verdict="agree"}})'
                f' / sum by (workflow) (practiceflow_pilot_items{{{sel}, verdict=~"agree|disagree"}})',
                "{{workflow}}",
            ),
            description="Agreed / (agreed + disagreed) items since the pilot began; `practiceflow pilot report` "
            "breaks it down by class and rule version",
        )
    )
    d = d.with_panel(
        graph(
            "Items compared per workflow and verdict",
            "short",
            (f"sum by (workflow, verdict) (practiceflow_pilot_items{{{sel}}})", "{{workflow}} {{verdict}}"),
        )
    )
    d = d.with_panel(
        graph(
            "Staff time saved per workflow",
            "s",
            (f"sum by (workflow) (practiceflow_pilot_staff_time_saved_seconds{{{sel}}})", "{{workflow}}"),
            description="Documented minutes per task (rules/pilot/tasks.yaml) for every agreed item",
        )
    )
    d = d.with_panel(
        single("Staff time saved, all workflows", "s", f"sum(practiceflow_pilot_staff_time_saved_seconds{{{sel}}})")
    )
    return d


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "practiceflow-fleet": fleet,
    "practiceflow-practice": practice,
    "practiceflow-workflow": workflow,
    "practiceflow-pilot": pilot,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard (stable: sorted keys, trailing newline)."""
    out = {}
    for name, build in DASHBOARDS.items():
        model = json.loads(json.dumps(build().build(), cls=JSONEncoder))
        out[f"{name}.json"] = json.dumps(model, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard differs from the code")
    args = ap.parse_args(argv)
    stale = []
    for folder in OUT_DIRS:
        for name, text in render().items():
            path = folder / name
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path.relative_to(ROOT)))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale dashboards (run deploy/grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
