from __future__ import annotations

from practiceflow.schemas.avro_gen import record_names
from practiceflow.settings import Settings
from practiceflow.streams import catalog


def test_settings_from_env_and_file(tmp_path, monkeypatch):
    cfg_file = tmp_path / "pf.toml"
    cfg_file.write_text('topic_prefix = "fromfile"\nkafka_bootstrap = "file:9092"\n')
    monkeypatch.setenv("PRACTICEFLOW_CONFIG", str(cfg_file))
    assert Settings().topic_prefix == "fromfile"
    monkeypatch.setenv("PRACTICEFLOW_KAFKA_BOOTSTRAP", "env:9092")
    s = Settings()
    assert s.kafka_bootstrap == "env:9092" and s.topic_prefix == "fromfile"
    assert Settings(state_dir=tmp_path).chdb_dsn == f"chdb://{tmp_path.resolve()}/clickhouse"


def test_catalog_covers_every_feed_and_record():
    names = {t.suffix for t in catalog.CATALOG}
    for feed in catalog.FEEDS:
        assert f"raw.{feed}" in names and f"dlq.{feed}" in names
    assert {"handoff", "audit", "analytics.flow"} <= names
    assert {t.record_type for t in catalog.CATALOG} <= set(record_names())
    assert set(catalog.NORMALIZED) <= set(record_names())


def test_practice_partitioning_matches_kafkas_murmur2():
    # Kafka's Java client test vector: murmur2("21".getBytes()) == -973932308
    assert catalog.murmur2(b"21") - (1 << 32) == -973932308
    assert catalog.partition_for("clinic-a", 3) == catalog.partition_for("clinic-a", 3)
    assert len({catalog.partition_for(f"clinic-{i}", 6) for i in range(50)}) == 6
