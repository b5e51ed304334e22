-- Oxeye's SQL catalogue, migration 2: views over logs.

-- Error records (OTLP severity text, ECS log.level or a logger's level).
CREATE VIEW error_logs AS
SELECT "@timestamp", index, service, severity, body, trace_id, span_id
FROM logs
WHERE upper(severity) IN ('ERROR', 'FATAL', 'CRITICAL', 'EMERGENCY', 'ALERT');

-- Log records next to the span that wrote them.
CREATE VIEW logs_with_spans AS
SELECT
    l."@timestamp",
    l.service,
    l.severity,
    l.body,
    s.trace_id,
    s.name AS span_name,
    s.duration_ms AS span_duration_ms,
    s.status_code AS span_status
FROM logs l
JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id;
