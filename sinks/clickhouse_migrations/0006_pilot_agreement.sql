-- 0006: pilot (shadow) mode: one row per compared work item (processors/pilot/compare.py, topic
-- pf.pilot.comparisons); `practiceflow pilot report` sums them per workflow / kind / rule version.
CREATE TABLE IF NOT EXISTS {db}.pilot_agreement (
    practice_id LowCardinality(String), item_id String, workflow LowCardinality(String),
    kind LowCardinality(String), queue LowCardinality(String), rule_id LowCardinality(String),
    rule_version LowCardinality(String), staff_option LowCardinality(String), staff_queue LowCardinality(String),
    staff_channel LowCardinality(String), decision_id String, verdict LowCardinality(String), why String,
    minutes Float64, minutes_saved Float64, task_rule LowCardinality(String), decided_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(decided_at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(decided_at))
ORDER BY (practice_id, item_id);
