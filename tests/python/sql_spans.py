"""Send known checkout traces to Oxeye with the OpenTelemetry Python SDK,
for the SQL tests.

usage: OTLP_ENDPOINT=http://127.0.0.1:PORT sql_spans.py
Trace i (0..5): a `checkout` SERVER span "GET /cart" lasting (i+1)*100 ms,
with customer.region = eu|us|ap (i % 3), an ERROR status and
http.response.status_code 500 when i is 1 or 4 (else 200); under it a
`payments` CLIENT span "charge" lasting (i+1)*50 ms. Times are explicit, so
durations are exact. Prints one JSON line: the traces with their ids.
"""
import json
import os
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint = os.environ["OTLP_ENDPOINT"] + "/v1/traces"
providers = []


def tracer(service):
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    providers.append(provider)
    return provider.get_tracer("oxeye.sql.test")


checkout, payments = tracer("checkout"), tracer("payments")
regions = ["eu", "us", "ap"]
base = time.time_ns() - 60 * 1_000_000_000
out = []
for i in range(6):
    start = base + i * 1_000_000_000
    error = i in (1, 4)
    root = checkout.start_span(
        "GET /cart",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"customer.region": regions[i % 3], "http.response.status_code": 500 if error else 200},
    )
    ctx = trace.set_span_in_context(root)
    child = payments.start_span("charge", kind=SpanKind.CLIENT, context=ctx, start_time=start + 1_000_000)
    child.end(end_time=start + 1_000_000 + (i + 1) * 50_000_000)
    if error:
        root.set_status(Status(StatusCode.ERROR, "payment failed"))
    root.end(end_time=start + (i + 1) * 100_000_000)
    out.append({
        "trace_id": format(root.get_span_context().trace_id, "032x"),
        "span_id": format(root.get_span_context().span_id, "016x"),
        "region": regions[i % 3],
        "error": error,
        "duration_ms": (i + 1) * 100,
        "start_ns": start,
    })
for p in providers:
    p.shutdown()
print(json.dumps(out))
