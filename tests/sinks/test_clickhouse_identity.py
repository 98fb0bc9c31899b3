"""The ClickHouse sink (chdb, real engine): rows of two patients never replace each
other, existing tables are migrated to the patient-first sort key, and the analytics
store holds no SSN, names or free text (the PHI rule in sinks/clickhouse.py).

chdb allows one engine path per process, and other tests open theirs: each test here
runs its body in a fresh (spawned) interpreter with its own path."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from practiceflow.processors.deadletter import dead_letter
from practiceflow.processors.dispatch import handoffs_for, normalize_raw
from practiceflow.sinks.clickhouse import ClickHouseSink

P = "demo"
T = 1_727_800_000_000
SSN = "123-45-6789"


def hl7(*segs: str) -> bytes:
    return ("\r".join(segs) + "\r").encode()


def vxu(mrn: str, control: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|EHR|CLINIC|IIS|STATE|20241001||VXU^V04^VXU_V04|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^CLINIC^MR||DOE^{mrn}||20100101|F",
        "RXA|0|1|20241001||141^Influenza, seasonal^CVX|0.5|mL",
    )


def adt_in1(mrn: str, control: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|EHR|CLINIC|PF|DEMO|20241001||ADT^A04|{control}|P|2.5.1",
        f"PID|1||{mrn}^^^CLINIC^MR||DOE^{mrn}",
        "IN1|1||AETNA|Aetna",
    )


def _in_child(body: Callable[[ClickHouseSink], None], path: Path) -> None:
    """Run ``body(sink)`` in a spawned interpreter (its own chdb engine); its assertion
    errors come back here."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_with_sink, body, str(path)).result()


def _with_sink(body: Callable[[ClickHouseSink], None], path: str) -> None:
    s = ClickHouseSink(f"chdb://{path}/clickhouse", database="identity_test")
    try:
        body(s)
    finally:
        s.close()


@pytest.fixture
def run_with_sink(tmp_path: Path) -> Callable[[Callable[[ClickHouseSink], None]], None]:
    return lambda body: _in_child(body, tmp_path)


def _write(sink: ClickHouseSink, raw: bytes) -> None:
    result = normalize_raw({"feed": "hl7v2", "payload": raw, "practice_id": P, "received_at": T})
    batch = [(r.record_type, r.value) for r in result.records]
    batch += [(h.record_type, h.value) for h in handoffs_for(result, P, T)]
    sink.write_batch(batch, T)


def _two_patients_flu_shots_and_coverages_both_survive_final(sink: ClickHouseSink) -> None:
    for raw in (vxu("MRN-A", "V1"), vxu("MRN-B", "V2"), adt_in1("MRN-A", "A1"), adt_in1("MRN-B", "A2")):
        _write(sink, raw)
    # a VXU is an Immunization record (its own table), not a lab observation
    shots = sink.query(
        "SELECT patient_id, immunization_id FROM {db}.immunizations FINAL WHERE vaccine_code = '141' ORDER BY 1"
    )
    assert [r[0] for r in shots] == ["MRN-A", "MRN-B"]
    assert len({r[1] for r in shots}) == 2
    covs = sink.query(
        "SELECT patient_id, key FROM {db}.records FINAL WHERE record_type = 'Coverage' AND practice_id = 'demo' "
        "ORDER BY 1"
    )
    assert [r[0] for r in covs] == ["MRN-A", "MRN-B"]
    # the same messages again (a replay) rewrite, never add
    for raw in (vxu("MRN-A", "V1"), adt_in1("MRN-B", "A2")):
        _write(sink, raw)
    assert sink.query("SELECT count() FROM {db}.immunizations FINAL WHERE vaccine_code = '141'")[0][0] == 2
    assert sink.query("SELECT count() FROM {db}.records FINAL WHERE record_type = 'Coverage'")[0][0] == 2


def _tables_are_ordered_by_practice_then_patient(sink: ClickHouseSink) -> None:
    keys = dict(
        sink.query(
            "SELECT name, sorting_key FROM system.tables WHERE database = {d:String}".replace(
                "{d:String}", "'identity_test'"
            )
        )
    )
    assert keys["records"].replace(" ", "") == "practice_id,patient_id,record_type,key"
    assert keys["observations"].replace(" ", "") == "practice_id,patient_id,observation_id"


def test_an_old_table_is_migrated_to_the_new_sort_key_keeping_its_rows(tmp_path: Path) -> None:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        pool.submit(_migration, str(tmp_path)).result()


def _migration(tmp_path: str) -> None:
    import clickhouse_connect

    dsn = f"chdb://{tmp_path}/clickhouse"
    client = clickhouse_connect.get_client(dsn=dsn)
    client.command("CREATE DATABASE IF NOT EXISTS legacy")
    client.command(
        "CREATE TABLE legacy.records (practice_id LowCardinality(String), record_type LowCardinality(String), "
        "key String, message_id String, feed LowCardinality(String), message_type LowCardinality(String), "
        "patient_id String, written_at DateTime64(3, 'UTC')) "
        "ENGINE = ReplacingMergeTree(written_at) ORDER BY (practice_id, record_type, key)"
    )
    client.command(
        "INSERT INTO legacy.records VALUES ('demo', 'Patient', 'M1', 'm', 'hl7v2', 'ADT^A01', 'M1', now64(3))"
    )
    client.close()
    s = ClickHouseSink(dsn, database="legacy")
    try:
        key = s.query("SELECT sorting_key FROM system.tables WHERE database = 'legacy' AND name = 'records'")[0][0]
        assert key.replace(" ", "") == "practice_id,patient_id,record_type,key"
        assert s.query("SELECT patient_id FROM {db}.records") == [("M1",)]
    finally:
        s.close()
    again = ClickHouseSink(dsn, database="legacy")  # idempotent: nothing more set aside or copied
    try:
        assert again.query("SELECT count() FROM {db}.records") == [(1,)]
        tables = [t for (t,) in again.query("SELECT name FROM system.tables WHERE database = 'legacy'")]
        assert len([t for t in tables if t.startswith("records_before_")]) == 1
    finally:
        again.close()


def _no_ssn_names_or_free_text_in_the_analytics_store(sink: ClickHouseSink) -> None:
    oru = hl7(
        "MSH|^~\\&|LAB|ACME|EHR|DEMO|20241001||ORU^R01|PHI1|P|2.5.1",
        f"PID|1||{SSN}^^^SSA^SS||ZYXWVUTS^QUENTIN||19800101|M|||||||||||{SSN}",
        "OBR|1|ORD9||80048^BMP^CPT",
        "OBX|1|NM|2345-7^Glucose^LN||250|mg/dL|70-99|HH|||F",
        f"OBX|2|TX|8251-1^Note^LN||Quentin Zyxwvuts SSN {SSN} called||||||F",
    )
    _write(sink, oru)
    # a reason that quotes message content (as an invalid-value reason does)
    dl = dead_letter(
        P, "hl7v2", "normalize", "invalid_numeric_value", f"OBX-5 '{SSN} ZYXWVUTS' is not a number", b"x", failed_at=T
    )
    sink.write_batch([("DeadLetter", dl)], T)
    dump = ""
    for (table,) in sink.query(  # every table and view (aggregate states are not readable as values)
        "SELECT name FROM system.tables WHERE database = 'identity_test' "
        "AND engine NOT IN ('AggregatingMergeTree', 'MaterializedView')"
    ):
        dump += repr(sink.query(f"SELECT * FROM {{db}}.{table}"))
    assert "ZYXWVUTS" not in dump.upper() and "QUENTIN" not in dump.upper()
    assert SSN not in dump and SSN.replace("-", "") not in dump
    # what an analyst needs is there: the numeric result and the unresolved patient marker
    rows = sink.query("SELECT patient_id, value, value_numeric FROM {db}.observations FINAL WHERE code = '2345-7'")
    assert rows and rows[0][0].startswith("unresolved:") and rows[0][1] == "250" and rows[0][2] == 250.0
    assert sink.query("SELECT value FROM {db}.observations FINAL WHERE code = '8251-1'") == [("",)]


def test_two_patients_flu_shots_and_coverages_both_survive_final(
    run_with_sink: Callable[[Callable[[ClickHouseSink], None]], None],
) -> None:
    run_with_sink(_two_patients_flu_shots_and_coverages_both_survive_final)


def test_tables_are_ordered_by_practice_then_patient(
    run_with_sink: Callable[[Callable[[ClickHouseSink], None]], None],
) -> None:
    run_with_sink(_tables_are_ordered_by_practice_then_patient)


def test_no_ssn_names_or_free_text_in_the_analytics_store(
    run_with_sink: Callable[[Callable[[ClickHouseSink], None]], None],
) -> None:
    run_with_sink(_no_ssn_names_or_free_text_in_the_analytics_store)
