"""Send a multi-service trace to Oxeye with the OpenTelemetry Python SDK.

usage: TRANSPORT=grpc|http OTLP_ENDPOINT=… PREFIX=… otlp_traces.py
frontend (SERVER) → frontend (CLIENT) → api (SERVER) → api process (INTERNAL)
→ two DB client spans and a cache client span that fails with an exception
event; then a separate "jobs" trace whose root links to the first trace.
Prints a JSON line with both trace ids and the expected tree.
"""
import json
import os
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

transport = os.environ.get("TRANSPORT", "grpc")
endpoint = os.environ["OTLP_ENDPOINT"]
prefix = os.environ.get("PREFIX", "")


def exporter():
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint + "/v1/traces")


providers = {}


def tracer(service):
    provider = TracerProvider(resource=Resource.create({"service.name": prefix + service, "host.name": "test-host"}))
    provider.add_span_processor(BatchSpanProcessor(exporter()))
    providers[service] = provider
    return provider.get_tracer("oxeye.test", "1.2.3")


frontend, api, jobs = tracer("frontend"), tracer("api"), tracer("jobs")

with frontend.start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
                                    attributes={"http.method": "GET", "http.route": "/checkout", "http.status_code": 200}) as root:
    trace_id = format(root.get_span_context().trace_id, "032x")
    with frontend.start_as_current_span("POST /api/checkout", kind=SpanKind.CLIENT,
                                        attributes={"http.method": "POST"}):
        with api.start_as_current_span("POST /api/checkout", kind=SpanKind.SERVER,
                                       attributes={"http.route": "/api/checkout", "user.id": 42}):
            with api.start_as_current_span("process order", kind=SpanKind.INTERNAL):
                with api.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT,
                                               attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM orders"}):
                    time.sleep(0.02)
                with api.start_as_current_span("INSERT orders", kind=SpanKind.CLIENT,
                                               attributes={"db.system": "postgresql"}):
                    time.sleep(0.005)
                with api.start_as_current_span("GET cart:42", kind=SpanKind.CLIENT,
                                               attributes={"db.system": "redis"}) as cache:
                    try:
                        raise ConnectionError("cache unreachable")
                    except ConnectionError as err:
                        cache.record_exception(err)
                        cache.set_status(Status(StatusCode.ERROR, "cache unreachable"))

with jobs.start_as_current_span("nightly report", kind=SpanKind.INTERNAL,
                                links=[Link(root.get_span_context(), {"link.reason": "follow-up"})]) as job:
    job_trace_id = format(job.get_span_context().trace_id, "032x")

for provider in providers.values():
    provider.force_flush()
    provider.shutdown()

print(json.dumps({
    "trace_id": trace_id,
    "job_trace_id": job_trace_id,
    "tree": {
        "GET /checkout": None,
        "POST /api/checkout@frontend": "GET /checkout",
        "POST /api/checkout@api": "POST /api/checkout@frontend",
        "process order": "POST /api/checkout@api",
        "SELECT orders": "process order",
        "INSERT orders": "process order",
        "GET cart:42": "process order",
    },
}))
