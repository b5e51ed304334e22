-- Oxeye's SQL catalogue, migration 1: views over metrics and spans.
-- Views only: the data stays in the stores, and a filter on a view's
-- column is pushed down to the store like one on the table.

-- Request counters from the span metrics (traces.span_metrics), one column
-- per label: the RED counters of every service and operation.
CREATE VIEW http_requests AS
SELECT
    "timestamp",
    labels['service_name'] AS service,
    labels['span_name'] AS operation,
    labels['span_kind'] AS kind,
    labels['status_code'] AS status_code,
    value AS calls
FROM samples
WHERE metric = 'traces_span_metrics_calls_total';

-- Spans and failed spans per service and operation.
CREATE VIEW errors_by_service AS
SELECT
    service,
    name AS operation,
    count(*) AS spans,
    count(*) FILTER (WHERE status_code = 'ERROR') AS errors,
    max(start_time) AS last_seen
FROM spans
GROUP BY service, name;

-- Database calls (client spans with db.* attributes, as the database
-- analysis reads them), slowest first when ordered by duration_ms.
CREATE VIEW slow_queries AS
SELECT
    start_time,
    service,
    coalesce(attributes['db.system.name'], attributes['db.system']) AS db_system,
    coalesce(attributes['db.query.text'], attributes['db.statement']) AS statement,
    coalesce(attributes['db.namespace'], attributes['db.name']) AS db_name,
    duration_ms,
    status_code,
    trace_id,
    span_id
FROM spans
WHERE kind = 'client'
  AND coalesce(attributes['db.system.name'], attributes['db.system']) IS NOT NULL;
