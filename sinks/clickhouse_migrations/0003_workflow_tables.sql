-- 0003: the workflow topics that land in ClickHouse besides the 0001 tables (see sinks/clickhouse.py rows_for).
-- Every table: ReplacingMergeTree on the record's stable key, partitioned by practice bucket and month
-- (0002_partitions.py says why), the Kafka position columns of the sink's exactly-once marks.

-- every revision of every work item (pf.handoff is compacted: handoff_items keeps the latest, this keeps the history)
CREATE TABLE IF NOT EXISTS {db}.work_item_events (
    practice_id LowCardinality(String), item_id String, revision UInt32, workflow LowCardinality(String),
    kind LowCardinality(String), queue LowCardinality(String), priority LowCardinality(String),
    state LowCardinality(String), outcome LowCardinality(String), decision_id String,
    rule_id LowCardinality(String), rule_version LowCardinality(String), model LowCardinality(String),
    prompt_version LowCardinality(String), source_feed LowCardinality(String), source_message_id String,
    created_at DateTime64(3, 'UTC'), at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(created_at))
ORDER BY (practice_id, item_id, revision);

-- staff decisions (pf.decisions): who chose which option; the names of edited fields, never their values or comments
CREATE TABLE IF NOT EXISTS {db}.decisions (
    practice_id LowCardinality(String), decision_id String, item_id String, item_revision UInt32,
    option LowCardinality(String), actor String, actor_role LowCardinality(String), channel LowCardinality(String),
    edited_fields Array(String), decided_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(decided_at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(decided_at))
ORDER BY (practice_id, decision_id);

-- drafts (pf.drafts): what was prepared for sign-off and its status; never the body
CREATE TABLE IF NOT EXISTS {db}.drafts (
    practice_id LowCardinality(String), draft_id String, item_id String, workflow LowCardinality(String),
    kind LowCardinality(String), content_type LowCardinality(String), status LowCardinality(String),
    patient_id String, rule_id LowCardinality(String), model LowCardinality(String),
    created_at DateTime64(3, 'UTC'), written_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(written_at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(created_at))
ORDER BY (practice_id, draft_id);

-- command results (pf.cmd.results): eligibility checks, LLM calls, EHR write-backs; never the payload
CREATE TABLE IF NOT EXISTS {db}.command_results (
    practice_id LowCardinality(String), command_id String, kind LowCardinality(String),
    workflow LowCardinality(String), outcome LowCardinality(String), reason String,
    payload_type LowCardinality(String), attempts UInt16, latency_ms Nullable(Float64),
    completed_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(completed_at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(completed_at))
ORDER BY (practice_id, command_id);

-- eligibility answers (pf.norm.eligibility, 271s): payer, active, benefits, rejections; no member id, name or birth date
CREATE TABLE IF NOT EXISTS {db}.eligibility_results (
    practice_id LowCardinality(String), response_id String, patient_id String, payer_id LowCardinality(String),
    payer_name LowCardinality(String), active Nullable(Bool), benefits UInt16, authorization_required Bool,
    rejections Array(String), follow_up_actions Array(String), plan_begin String, plan_end String,
    message_id String, written_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String) DEFAULT '', kafka_partition Int32 DEFAULT -1, kafka_offset Int64 DEFAULT -1
) ENGINE = ReplacingMergeTree(written_at) PARTITION BY (cityHash64(practice_id) % 8, toYYYYMM(written_at))
ORDER BY (practice_id, patient_id, response_id);
