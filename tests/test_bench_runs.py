"""The committed benchmarks still run and measure what they claim to (their numbers are
recorded by bench/run_all.py, not asserted here: speed is measured in the benchmark, not
in timed tests)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from tests.fixtures import REPO_ROOT

HL7_DIR = REPO_ROOT / "processors" / "hl7"


def _pure_python_requested() -> bool:
    return os.environ.get("PRACTICEFLOW_PURE_PYTHON", "") not in ("", "0")


def test_hl7_bench_per_type_runs_and_reports_the_form():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_hl7.py"), "--per-type", "0.05"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    res = json.loads(out.stdout)
    if _pure_python_requested():  # the run says which form it measured, and it is the one asked for
        assert res["forms"] == {"dates": "python", "parser": "python", "normalize": "python"}
    else:
        # the published figures are for the compiled build: a build that failed, was skipped or
        # went stale (its recorded source hash no longer matches) would be measured as Python here
        assert res["forms"] == {"dates": "compiled", "parser": "compiled", "normalize": "compiled"}
        built = json.loads((HL7_DIR / "_compiled_sources.json").read_text())
        for module in ("dates", "parser", "normalize"):
            assert built[module] == hashlib.sha256((HL7_DIR / f"{module}.py").read_bytes()).hexdigest()
    # the benchmark measured the messages it describes: the ORU gives 1 patient + 1 order +
    # 14 observations, the ADT a patient, an encounter and a coverage
    assert res["oru_r01_20seg"]["records"] == 16
    assert res["adt_a01_pid_pv1_in1"]["records"] == 3
    for label in ("oru_r01_20seg", "adt_a01_pid_pv1_in1"):
        assert res[label]["normalize_iterations"] > 0 and res[label]["parse_only_iterations"] > 0


def test_context_bench_runs_over_every_context_record_type():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_context.py"), "0.05"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    res = json.loads(out.stdout)
    assert set(res["input"]["by_type"]) >= {"Encounter", "Observation", "MedicationOrder", "Coverage", "Patient"}
    for part in ("fold", "fold_with_table_codec"):
        assert res[part]["records"] >= res["input"]["records"] and res[part]["records_per_s"] > 0
    assert res["match"]["index_size"] == 20_000 and res["match"]["matches"] > 0
    assert set(res["match"]["share"]) <= {"matched", "ambiguous", "new"}


def test_prior_auth_bench_drafts_every_sample_case():
    out = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "bench_prior_auth.py"), "0.05"],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    res = json.loads(out.stdout)
    # MRI, oxygen and sleep study: PAS + 278 + letter; the CT without a diagnosis: no 278
    assert res["orders"] == 4 and res["drafts_per_order"] == [3, 3, 2, 3]
    assert res["pa_drafts_per_second"] > 0 and res["draft_latency_ms_p99"] >= res["draft_latency_ms_p50"] > 0
    assert res["llm"] is False


def test_e2e_cpu_split_counts_each_role_and_never_a_process_that_ended():
    """The e2e bench's per-process CPU split (bench/e2e_notes.md): a role's CPU per message
    between two readings, and None -- never 0 or a negative figure -- for a role whose process
    could not be read at one of them (ended before the first, or between the two)."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import bench_e2e
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its /proc entry is gone
    ends = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    saved = dict(bench_e2e.OTHERS)
    bench_e2e.OTHERS.clear()
    bench_e2e.OTHERS.update({"gateways": [gone.pid], "broker": [ends.pid]})
    try:
        before = bench_e2e.cpu_by_role([os.getpid()])
        ends.kill()
        ends.wait()  # ends between the two readings
        t = time.process_time()
        while time.process_time() - t < 0.5:  # 0.5 s of this process's CPU: 5 ms for each of 100 messages
            pass
        split = bench_e2e.cpu_split(before, bench_e2e.cpu_by_role([os.getpid()]), 100)
    finally:
        bench_e2e.OTHERS.clear()
        bench_e2e.OTHERS.update(saved)
        ends.kill()
    assert before["gateways"] is None and before["broker"] is not None
    assert split["gateways"] is None and split["broker"] is None
    assert 4.8 <= split["worker"] <= 6.0, split  # /proc counts in clock ticks (10 ms)
    assert split["all"] == split["worker"]


def test_e2e_records_per_input_reads_every_topic_of_the_run_on_the_real_broker(stack):
    """The e2e drain's Kafka records per input (bench/e2e_notes.md): the run's own topics and the
    worker's changelogs (``bench-<prefix>-...``) are counted, another run's are not, the prefix is
    dropped from the names, and the records on topics the worker reads again are summed apart."""
    import uuid

    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import bench_e2e
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))

    prefix, other = f"b{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}.norm.observation", f"{prefix}.analytics.flow", f"bench-{prefix}-seen-messages-changelog"]
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    for fut in admin.create_topics([NewTopic(t, 2, 1) for t in [*names, f"{other}.norm.observation"]]).values():
        fut.result(30)
    before = bench_e2e.topic_ends(stack.bootstrap, prefix)
    assert before == dict.fromkeys(names, 0)
    producer = Producer({"bootstrap.servers": stack.bootstrap})
    for topic, n in ((names[0], 27), (names[1], 10), (names[2], 20), (f"{other}.norm.observation", 99)):
        for i in range(n):
            producer.produce(topic, b"x", partition=i % 2)
    assert producer.flush(30) == 0
    after = bench_e2e.topic_ends(stack.bootstrap, prefix)
    per = bench_e2e.records_per_input(before, after, 10, prefix, bench_e2e.worker_input_suffixes())
    assert per["by_topic"] == {"norm.observation": 2.7, "seen-messages-changelog": 2.0, "analytics.flow": 1.0}
    assert per["written"] == 5.7
    assert per["read_again_by_the_worker"] == 2.7  # the normalized records; not the flow events or the changelog
