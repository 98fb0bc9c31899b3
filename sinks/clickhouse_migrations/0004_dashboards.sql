-- 0004: what the dashboards read. Materialized views (MV -> AggregatingMergeTree) where the aggregate
-- adds up insert by insert; plain views where it needs a row's latest version or a join (denial money is
-- re-versioned as it is recovered; time to handoff joins two tables). Counts are uniqExact of ids, so a
-- row written again (a worker replay of a flow event, a work item revision) never counts twice.
-- Each MV's table is back-filled from its source here (TRUNCATE first: the file re-runs after a crash;
-- the sink writes nothing while migrations run). Query an aggregate with the -Merge combinator, e.g.
--   SELECT feed, minute, uniqExactMerge(messages) FROM practiceflow.feed_throughput_minute GROUP BY feed, minute

-- throughput per feed: messages per practice, feed, stage (accepted, normalized, dead_lettered, ...) and minute
CREATE TABLE IF NOT EXISTS {db}.feed_throughput_minute (
    practice_id LowCardinality(String), feed LowCardinality(String), stage LowCardinality(String),
    minute DateTime('UTC'), messages AggregateFunction(uniqExact, String),
    records SimpleAggregateFunction(sum, UInt64)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(minute) ORDER BY (practice_id, feed, stage, minute);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feed_throughput_minute_mv TO {db}.feed_throughput_minute AS
SELECT practice_id, feed, stage, toStartOfMinute(at) AS minute, uniqExactState(message_id) AS messages,
       sum(toUInt64(records)) AS records
FROM {db}.flow_events GROUP BY practice_id, feed, stage, minute;
TRUNCATE TABLE {db}.feed_throughput_minute;
INSERT INTO {db}.feed_throughput_minute
SELECT practice_id, feed, stage, toStartOfMinute(at) AS minute, uniqExactState(message_id), sum(toUInt64(records))
FROM {db}.flow_events GROUP BY practice_id, feed, stage, minute;

-- workflow volumes and outcomes: work items per workflow, kind, queue, state, outcome and day (of the revision)
CREATE TABLE IF NOT EXISTS {db}.work_items_daily (
    practice_id LowCardinality(String), workflow LowCardinality(String), kind LowCardinality(String),
    queue LowCardinality(String), state LowCardinality(String), outcome LowCardinality(String), day Date,
    items AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (practice_id, workflow, kind, queue, state, outcome, day);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.work_items_daily_mv TO {db}.work_items_daily AS
SELECT practice_id, workflow, kind, queue, state, outcome, toDate(at) AS day, uniqExactState(item_id) AS items
FROM {db}.work_item_events GROUP BY practice_id, workflow, kind, queue, state, outcome, day;
TRUNCATE TABLE {db}.work_items_daily;
INSERT INTO {db}.work_items_daily
SELECT practice_id, workflow, kind, queue, state, outcome, toDate(at) AS day, uniqExactState(item_id)
FROM {db}.work_item_events GROUP BY practice_id, workflow, kind, queue, state, outcome, day;

-- staff decisions per option (approve / edit / reject / ...), channel and day
CREATE TABLE IF NOT EXISTS {db}.decisions_daily (
    practice_id LowCardinality(String), option LowCardinality(String), channel LowCardinality(String), day Date,
    decisions AggregateFunction(uniqExact, String)
) ENGINE = AggregatingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (practice_id, option, channel, day);
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.decisions_daily_mv TO {db}.decisions_daily AS
SELECT practice_id, option, channel, toDate(decided_at) AS day, uniqExactState(decision_id) AS decisions
FROM {db}.decisions GROUP BY practice_id, option, channel, day;
TRUNCATE TABLE {db}.decisions_daily;
INSERT INTO {db}.decisions_daily
SELECT practice_id, option, channel, toDate(decided_at) AS day, uniqExactState(decision_id)
FROM {db}.decisions GROUP BY practice_id, option, channel, day;

-- agreement: how often staff took what the software proposed (approve) rather than edit or reject it, per
-- workflow and day. Hook for pilot mode: a later migration may add the pilot's own shadow-decision table
-- and redefine this view (CREATE OR REPLACE VIEW) over it; dashboards keep reading pilot_agreement_daily.
CREATE OR REPLACE VIEW {db}.pilot_agreement_daily AS
SELECT d.practice_id AS practice_id, w.workflow AS workflow, toDate(d.decided_at) AS day,
       count() AS decisions, countIf(d.option = 'approve') AS agreed,
       countIf(d.option IN ('edit', 'reject')) AS overridden, agreed / decisions AS agreement
FROM (SELECT * FROM {db}.decisions FINAL) AS d
INNER JOIN (SELECT practice_id, item_id, any(workflow) AS workflow FROM {db}.work_item_events GROUP BY practice_id, item_id) AS w
    ON d.practice_id = w.practice_id AND d.item_id = w.item_id
GROUP BY practice_id, workflow, day;

-- time to handoff: from the first flow event of the message a work item came from to the item's first
-- revision; and time to decision: from that revision to the first staff decision on the item
CREATE OR REPLACE VIEW {db}.time_to_handoff_daily AS
SELECT w.practice_id AS practice_id, w.workflow AS workflow, toDate(w.created_at) AS day, count() AS items,
       quantileExact(0.5)(greatest(dateDiff('millisecond', f.first_at, w.created_at), 0)) / 1000 AS p50_seconds,
       quantileExact(0.9)(greatest(dateDiff('millisecond', f.first_at, w.created_at), 0)) / 1000 AS p90_seconds
FROM (SELECT practice_id, item_id, any(workflow) AS workflow, any(source_message_id) AS message_id,
             min(created_at) AS created_at
      FROM {db}.work_item_events GROUP BY practice_id, item_id) AS w
INNER JOIN (SELECT practice_id, message_id, min(at) AS first_at FROM {db}.flow_events GROUP BY practice_id, message_id) AS f
    ON w.practice_id = f.practice_id AND w.message_id = f.message_id
GROUP BY practice_id, workflow, day;
CREATE OR REPLACE VIEW {db}.time_to_decision_daily AS
SELECT w.practice_id AS practice_id, w.workflow AS workflow, toDate(d.first_decided) AS day, count() AS items,
       quantileExact(0.5)(greatest(dateDiff('second', w.created_at, d.first_decided), 0)) AS p50_seconds,
       quantileExact(0.9)(greatest(dateDiff('second', w.created_at, d.first_decided), 0)) AS p90_seconds
FROM (SELECT practice_id, item_id, any(workflow) AS workflow, min(created_at) AS created_at
      FROM {db}.work_item_events GROUP BY practice_id, item_id) AS w
INNER JOIN (SELECT practice_id, item_id, min(decided_at) AS first_decided FROM {db}.decisions GROUP BY practice_id, item_id) AS d
    ON w.practice_id = d.practice_id AND w.item_id = d.item_id
GROUP BY practice_id, workflow, day;

-- minutes saved: work items done, times the minutes a person spends on one without the software.
-- The rates are estimates to replace with the practice's own time study:
--   INSERT INTO practiceflow.minutes_saved_rates (workflow, kind, minutes, source) VALUES ('refill', '', 3, 'our study')
-- (kind '' = the workflow's default; a row with a kind overrides it; the newest row per workflow and kind wins)
CREATE TABLE IF NOT EXISTS {db}.minutes_saved_rates (
    workflow LowCardinality(String), kind LowCardinality(String), minutes Float64, source String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (workflow, kind);
INSERT INTO {db}.minutes_saved_rates (workflow, kind, minutes, source, updated_at)
SELECT * FROM values('workflow String, kind String, minutes Float64, source String, updated_at DateTime64(3, \'UTC\')',
    ('results_review', '', 2, 'estimate: open, read and file one result', '2026-12-01 00:00:00'),
    ('refill', '', 4, 'estimate: chart check and protocol lookup per refill request', '2026-12-01 00:00:00'),
    ('intake', '', 6, 'estimate: registration and a payer-portal eligibility check', '2026-12-01 00:00:00'),
    ('fax', '', 3, 'estimate: read, classify, match and file one fax document', '2026-12-01 00:00:00'),
    ('referral', '', 5, 'estimate: referral intake and scheduling hand-off', '2026-12-01 00:00:00'),
    ('patient_match', '', 2, 'estimate: resolve one ambiguous patient match', '2026-12-01 00:00:00'),
    ('denials', '', 12, 'estimate: work one denied claim line to an action', '2026-12-01 00:00:00'))
WHERE (workflow, kind) NOT IN (SELECT workflow, kind FROM {db}.minutes_saved_rates);
CREATE OR REPLACE VIEW {db}.minutes_saved_daily AS
SELECT i.practice_id AS practice_id, i.workflow AS workflow, i.kind AS kind, i.day AS day, i.items AS items,
       i.items * if(k.minutes > 0, k.minutes, r.minutes) AS minutes_saved
FROM (SELECT practice_id, workflow, kind, day, uniqExactMerge(items) AS items FROM {db}.work_items_daily
      WHERE state = 'done' GROUP BY practice_id, workflow, kind, day) AS i
LEFT JOIN (SELECT workflow, kind, argMax(minutes, updated_at) AS minutes FROM {db}.minutes_saved_rates
           WHERE kind != '' GROUP BY workflow, kind) AS k ON i.workflow = k.workflow AND i.kind = k.kind
LEFT JOIN (SELECT workflow, argMax(minutes, updated_at) AS minutes FROM {db}.minutes_saved_rates
           WHERE kind = '' GROUP BY workflow) AS r ON i.workflow = r.workflow;

-- denial dollars: the latest state of every ledger entry, summed per practice, payer, category and month
CREATE OR REPLACE VIEW {db}.denial_dollars_monthly AS
SELECT practice_id, payer_id, category, toStartOfMonth(updated_at) AS month, count() AS entries,
       sum(denied) AS denied, sum(recoverable) AS recoverable, sum(recovered) AS recovered,
       sum(written_off) AS written_off, sum(patient_responsibility) AS patient_responsibility
FROM {db}.denial_money FINAL
GROUP BY practice_id, payer_id, category, month;
