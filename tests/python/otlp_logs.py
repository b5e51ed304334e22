"""Export log records to Oxeye with the OpenTelemetry Python SDK.

usage: TRANSPORT=grpc|http OTLP_ENDPOINT=… SERVICE=… otlp_logs.py
Logs through Python's logging module (the SDK's LoggingHandler): an info
record with attributes, a warning, and an error with a stack trace inside a
span (the span is exported too). Prints a JSON line with the span's trace id.
"""
import json
import logging
import os

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

transport = os.environ.get("TRANSPORT", "grpc")
endpoint = os.environ["OTLP_ENDPOINT"]
if transport == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPLogExporter(endpoint=endpoint + "/v1/logs")
    span_exporter = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")

service = os.environ.get("SERVICE", "checkout")
resource = Resource.create({"service.name": service, "deployment.environment": "test"})
provider = LoggerProvider(resource=resource)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
log = logging.getLogger("oxeye.test")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
tracer = tracer_provider.get_tracer("oxeye.test")

log.info("user signed in", extra={"user.id": "u-42", "attempt": 3})
log.warning("cart is getting large: %d items", 120)
with tracer.start_as_current_span("pay") as span:
    trace_id = format(span.get_span_context().trace_id, "032x")
    try:
        raise ValueError("card number rejected by issuer")
    except ValueError:
        log.exception("payment failed")
provider.force_flush()
provider.shutdown()
tracer_provider.shutdown()
print(json.dumps({"trace_id": trace_id}))
