-- 0008: the input each row was made from, so a worker's replay writes no row twice (issue 8).
-- A worker killed after a batch's outputs reached Kafka but before its de-dup marks did handles
-- the batch again and sends the same outputs at new offsets. Those records name their input
-- (pf-source header: topic, partition, offset) and their number among its outputs (pf-seq); the
-- sink stores that here with a hash of the row's sort key (origin_key) and skips a row whose
-- origin it already holds (sinks/clickhouse.py). Rows from before this migration, and records
-- without the headers, are their own origin: their Kafka position, seq 0 (the defaults below);
-- origin_key 0 means "not recorded" and matches any key.
ALTER TABLE {db}.records
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.observations
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.immunizations
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.fax_classifications
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.handoff_items
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.dead_letters
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.denial_money
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.flow_events
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.audit_events
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.work_item_events
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.decisions
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.drafts
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.command_results
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.eligibility_results
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
ALTER TABLE {db}.pilot_agreement
    ADD COLUMN IF NOT EXISTS origin_topic LowCardinality(String) DEFAULT kafka_topic,
    ADD COLUMN IF NOT EXISTS origin_partition Int32 DEFAULT kafka_partition,
    ADD COLUMN IF NOT EXISTS origin_offset Int64 DEFAULT kafka_offset,
    ADD COLUMN IF NOT EXISTS origin_seq Int32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS origin_key UInt64 DEFAULT 0;
