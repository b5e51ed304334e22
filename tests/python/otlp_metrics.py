"""Export metrics to Oxeye with the OpenTelemetry Python SDK.

usage: TRANSPORT=grpc|http OTLP_ENDPOINT=… SERVICE=… otlp_metrics.py
Two collection cycles: counter +5 then +3, histogram observations, an exponential
histogram, an up-down counter and an observable gauge. Exemplars come from a
sampled span. With TEMPORALITY=delta the counter is exported as a delta sum.
Prints a JSON line with the exemplar's trace id.
"""
import json
import os
import sys

from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

transport = os.environ.get("TRANSPORT", "grpc")
endpoint = os.environ["OTLP_ENDPOINT"]
temporality = {}
if os.environ.get("TEMPORALITY") == "delta":
    temporality = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.CUMULATIVE}

if transport == "grpc":
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, preferred_temporality=temporality)
else:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics", preferred_temporality=temporality)

resource = Resource.create({
    "service.name": os.environ.get("SERVICE", "checkout"),
    "service.instance.id": "i-1",
    "deployment.environment": "test",
})
# A long interval: collections happen only on force_flush().
reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
provider = MeterProvider(
    resource=resource,
    metric_readers=[reader],
    views=[View(instrument_name="app.size", aggregation=ExponentialBucketHistogramAggregation(max_size=20))],
)
meter = provider.get_meter("oxeye.test")
tracer = TracerProvider(resource=resource).get_tracer("oxeye.test")

requests = meter.create_counter("app.requests", unit="{request}", description="Requests handled")
queue = meter.create_up_down_counter("app.queue.depth", unit="{item}", description="Items queued")
latency = meter.create_histogram("app.latency", unit="ms", description="Request latency")
size = meter.create_histogram("app.size", unit="By", description="Payload size")
meter.create_observable_gauge(
    "app.memory", unit="By", description="Memory in use",
    callbacks=[lambda options: [Observation(1024.0, {"area": "heap"})]],
)

attrs = {"http.route": "/pay", "http.method": "POST"}
requests.add(5, attrs)
queue.add(7)
for value in (3, 30, 300):
    latency.record(value, attrs)
for value in (1, 10, 100, 1000):
    size.record(value)
with tracer.start_as_current_span("pay") as span:
    latency.record(42, attrs)
    trace_id = format(span.get_span_context().trace_id, "032x")
assert provider.force_flush(30_000), "first export failed"

requests.add(3, attrs)
queue.add(-2)
assert provider.force_flush(30_000), "second export failed"
provider.shutdown()
print(json.dumps({"trace_id": trace_id}))
