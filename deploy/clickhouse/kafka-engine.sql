-- The production alternative to `practiceflow sink`: ClickHouse reads the Avro topics itself (Kafka table
-- engine, format AvroConfluent: the Confluent wire format, schemas fetched from the registry) and
-- materialized views write the SAME tables the sink writes (sinks/clickhouse_migrations). README
-- "ClickHouse analytics" says when to choose it and what it gives up.
--
-- Apply the migrations first (`practiceflow sink --migrate-only`), then this file with the placeholders
-- replaced (scripts: `sed -e s/{db}/practiceflow/g -e s/{prefix}/pf/g ...`):
--   {db}        the analytics database (settings clickhouse_database, default practiceflow)
--   {prefix}    the topic prefix (settings topic_prefix, default pf)
--   {brokers}   Kafka bootstrap list, host:port,host:port
--   {registry}  the Confluent-protocol registry URL (Apicurio: http://apicurio:8080/apis/ccompat/v7)
--   {group}     the consumer group (one per ClickHouse cluster; not the sink's group)
-- Do not run `practiceflow sink` against the same database as well: both would write every row.
--
-- What stays true: the same columns, keys, partitions and TTLs; the Kafka position of every row in
-- kafka_topic / kafka_partition / kafka_offset (the engine's _topic, _partition, _offset), so the
-- reconciliation queries work unchanged. What differs: the Kafka engine is at-least-once (a server
-- crash between its insert and its commit re-inserts a block), so raw counts may exceed the topics'
-- messages; FINAL and uniqExact(key) stay exact. The views leave origin_* to their DEFAULTs (each
-- row its own position, seq 0, key 0): writing a worker replay's copies once (raw) is the
-- practiceflow sink's feature, not the engine's; keep the views from naming those columns. The PHI rules of sinks/clickhouse.py are repeated here
-- by selecting only the same columns, and SSN-shaped numbers are masked with the same regular expression;
-- keep the two in step when a table changes (tests/deploy/test_kafka_engine_template.py checks the
-- columns against the migrated tables).
-- Avro longs that are epoch milliseconds arrive as Int64 and are converted with fromUnixTimestamp64Milli;
-- nested records (source, produced_by) arrive as Tuples; unions with null as Nullable.

-- ---------------------------------------------------------------- analytics.flow -> flow_events
CREATE TABLE IF NOT EXISTS {db}.kafka_flow_events (
    practice_id String, message_id String, feed String, stage String, record_type Nullable(String),
    records Int32, latency_ms Nullable(Float64), at Int64
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.analytics.flow',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_flow_events_mv TO {db}.flow_events AS
SELECT practice_id, message_id, feed, stage, ifNull(record_type, '') AS record_type, toUInt32(records) AS records,
       latency_ms, fromUnixTimestamp64Milli(at, 'UTC') AS at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_flow_events;

-- ---------------------------------------------------------------- audit -> audit_events (the chained topic)
CREATE TABLE IF NOT EXISTS {db}.kafka_audit_events (
    practice_id String, event_id String, at Int64, actor String, action String, entity_type String,
    entity_id String, reason String, outcome String, details Map(String, String), prev_hash Nullable(String),
    hash Nullable(String)
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.audit',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_audit_events_mv TO {db}.audit_events AS
SELECT practice_id, event_id, fromUnixTimestamp64Milli(at, 'UTC') AS at, actor, action, entity_type, entity_id,
       replaceRegexpAll(reason, '(^|[^0-9])[0-9]{3}-[0-9]{2}-([0-9]{4})([^0-9]|$)', '\\1***-**-\\2\\3') AS reason, outcome,
       details, ifNull(prev_hash, '') AS prev_hash, ifNull(hash, '') AS hash,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_audit_events;

-- ---------------------------------------------------------------- handoff -> handoff_items + work_item_events
CREATE TABLE IF NOT EXISTS {db}.kafka_handoff (
    practice_id String, item_id String, workflow String, queue String, priority String, title String,
    patient_id Nullable(String), subject_type Nullable(String), subject_id Nullable(String),
    evidence Array(Tuple(record_type String)), created_at Int64,
    source Tuple(feed String, message_id String, raw_topic Nullable(String), message_type Nullable(String),
                 sent_at Nullable(String)),
    kind Nullable(String), state String, revision Int32, due_at Nullable(Int64),
    produced_by Nullable(Tuple(kind String, rule_id Nullable(String), rule_version Nullable(String),
                               rule_source Nullable(String), model Nullable(String), model_version Nullable(String),
                               prompt_version Nullable(String), confidence Nullable(Float64))),
    decision_id Nullable(String), outcome Nullable(String), updated_at Nullable(Int64)
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.handoff',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_handoff_items_mv TO {db}.handoff_items AS
SELECT practice_id, item_id, workflow, queue, priority,
       replaceRegexpAll(title, '(^|[^0-9])[0-9]{3}-[0-9]{2}-([0-9]{4})([^0-9]|$)', '\\1***-**-\\2\\3') AS title,
       ifNull(patient_id, '') AS patient_id, ifNull(subject_type, '') AS subject_type,
       ifNull(subject_id, '') AS subject_id, toUInt16(length(evidence)) AS evidence_count,
       fromUnixTimestamp64Milli(created_at, 'UTC') AS created_at, toUInt32(revision) AS revision,
       ifNull(kind, '') AS kind, state, ifNull(produced_by.rule_id, '') AS rule_id,
       ifNull(produced_by.rule_version, '') AS rule_version, ifNull(produced_by.model, '') AS model,
       ifNull(produced_by.prompt_version, '') AS prompt_version, ifNull(outcome, '') AS outcome,
       if(due_at IS NULL, NULL, fromUnixTimestamp64Milli(assumeNotNull(due_at), 'UTC')) AS due_at,
       if(updated_at IS NULL, NULL, fromUnixTimestamp64Milli(assumeNotNull(updated_at), 'UTC')) AS updated_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_handoff;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_work_item_events_mv TO {db}.work_item_events AS
SELECT practice_id, item_id, toUInt32(revision) AS revision, workflow, ifNull(kind, '') AS kind, queue, priority,
       state, ifNull(outcome, '') AS outcome, ifNull(decision_id, '') AS decision_id,
       ifNull(produced_by.rule_id, '') AS rule_id, ifNull(produced_by.rule_version, '') AS rule_version,
       ifNull(produced_by.model, '') AS model, ifNull(produced_by.prompt_version, '') AS prompt_version,
       source.feed AS source_feed, source.message_id AS source_message_id,
       fromUnixTimestamp64Milli(created_at, 'UTC') AS created_at,
       fromUnixTimestamp64Milli(ifNull(updated_at, created_at), 'UTC') AS at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_handoff;

-- ---------------------------------------------------------------- decisions -> decisions
CREATE TABLE IF NOT EXISTS {db}.kafka_decisions (
    practice_id String, decision_id String, item_id String, item_revision Nullable(Int32), option String,
    actor String, actor_role Nullable(String), edits Map(String, String), channel String, decided_at Int64
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.decisions',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_decisions_mv TO {db}.decisions AS
SELECT practice_id, decision_id, item_id, toUInt32(ifNull(item_revision, 0)) AS item_revision, option, actor,
       ifNull(actor_role, '') AS actor_role, channel, arraySort(mapKeys(edits)) AS edited_fields,
       fromUnixTimestamp64Milli(decided_at, 'UTC') AS decided_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_decisions;

-- ---------------------------------------------------------------- cmd.results -> command_results
CREATE TABLE IF NOT EXISTS {db}.kafka_command_results (
    practice_id String, command_id String, kind String, workflow String, outcome String, reason Nullable(String),
    payload_type Nullable(String), attempts Int32, latency_ms Nullable(Float64), completed_at Int64
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.cmd.results',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_command_results_mv TO {db}.command_results AS
SELECT practice_id, command_id, kind, workflow, outcome,
       left(replaceRegexpAll(replaceRegexpAll(ifNull(reason, ''), '\'[^\']*\'|"[^"]*"', '\'…\''),
                             '(^|[^0-9])[0-9]{3}-[0-9]{2}-([0-9]{4})([^0-9]|$)', '\\1***-**-\\2\\3'), 200) AS reason,
       ifNull(payload_type, '') AS payload_type, toUInt16(attempts) AS attempts, latency_ms,
       fromUnixTimestamp64Milli(completed_at, 'UTC') AS completed_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_command_results;

-- ---------------------------------------------------------------- denials.ledger -> denial_money
CREATE TABLE IF NOT EXISTS {db}.kafka_denial_money (
    practice_id String, entry_id String, claim_id String, adjudication_id String, payer_id Nullable(String),
    payer_name Nullable(String), category String, rule_ids Array(String), reason_codes Array(String),
    adjusted Float64, denied Float64, recoverable Float64, recovered Float64, written_off Float64,
    patient_responsibility Float64, state String, action Nullable(String), denied_on Nullable(String),
    resolved_on Nullable(String), days_to_resolution Nullable(Int32), item_id Nullable(String), updated_at Int64
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.denials.ledger',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_denial_money_mv TO {db}.denial_money AS
SELECT practice_id, entry_id, claim_id, adjudication_id, ifNull(payer_id, '') AS payer_id,
       ifNull(payer_name, '') AS payer_name, category, rule_ids, reason_codes, adjusted, denied, recoverable,
       recovered, written_off, patient_responsibility, state, ifNull(action, '') AS action,
       ifNull(denied_on, '') AS denied_on, ifNull(resolved_on, '') AS resolved_on, days_to_resolution,
       ifNull(item_id, '') AS item_id, fromUnixTimestamp64Milli(updated_at, 'UTC') AS updated_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_denial_money;

-- ---------------------------------------------------------------- norm.observation -> records + observations
-- (the other norm.* topics follow the records part of this pattern: key = the record's entity id)
CREATE TABLE IF NOT EXISTS {db}.kafka_observations (
    practice_id String, patient_id String, observation_id String, order_id Nullable(String),
    code Tuple(system Nullable(String), code Nullable(String), display Nullable(String)),
    value_type Nullable(String), value Nullable(String), value_numeric Nullable(Float64), units Nullable(String),
    abnormal_flags Array(String), status Nullable(String), effective_at Nullable(String),
    source Tuple(feed String, message_id String, raw_topic Nullable(String), message_type Nullable(String),
                 sent_at Nullable(String))
) ENGINE = Kafka SETTINGS kafka_broker_list = '{brokers}', kafka_topic_list = '{prefix}.norm.observation',
    kafka_group_name = '{group}', kafka_format = 'AvroConfluent', format_avro_schema_registry_url = '{registry}';
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_observation_records_mv TO {db}.records AS
SELECT practice_id, 'Observation' AS record_type, observation_id AS key, source.message_id AS message_id,
       source.feed AS feed, ifNull(source.message_type, '') AS message_type, patient_id,
       now64(3, 'UTC') AS written_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_observations;
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.kafka_observations_mv TO {db}.observations AS
SELECT practice_id, observation_id, patient_id, ifNull(order_id, '') AS order_id, ifNull(code.code, '') AS code,
       ifNull(code.system, '') AS code_system, ifNull(code.display, '') AS display,
       -- free-text values (TX, FT, ST, ..., or untyped without a number) are not stored
       if(value_type IN ('TX', 'FT', 'ST', 'string', 'ED', 'RP', 'markdown', 'Attachment', 'Annotation')
              OR (value_type IS NULL AND value_numeric IS NULL), '',
          replaceRegexpAll(ifNull(value, ''), '(^|[^0-9])[0-9]{3}-[0-9]{2}-([0-9]{4})([^0-9]|$)', '\\1***-**-\\2\\3')) AS value,
       value_numeric, ifNull(units, '') AS units, abnormal_flags AS flags, ifNull(status, '') AS status,
       ifNull(effective_at, '') AS effective_at, source.message_id AS message_id, now64(3, 'UTC') AS written_at,
       _topic AS kafka_topic, toInt32(_partition) AS kafka_partition, toInt64(_offset) AS kafka_offset
FROM {db}.kafka_observations;
