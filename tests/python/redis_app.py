"""A cache-aside reader against a real redis-server, instrumented with the
OpenTelemetry Python SDK and opentelemetry-instrumentation-redis, exporting
to Oxeye over OTLP/gRPC. READS requests read product:<k> for k in a fixed
rotation of 50 keys with 10 new keys mixed in; a miss (None) is followed
by a SET, as cache-aside code does. Then 10 session keys are written and
never read. Prints the hits and misses it counted itself.

usage: OTLP_ENDPOINT=http://127.0.0.1:4317 REDIS_PORT=… redis_app.py
"""
import json
import os

import redis
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

READS = 300
SESSIONS = 10

provider = TracerProvider(resource=Resource.create({"service.name": "catalog"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["OTLP_ENDPOINT"], insecure=True)))


def record_key(span, instance, args, kwargs):
    # The instrumentation writes `GET ?`; the key is recorded here.
    if span and span.is_recording() and len(args) > 1:
        span.set_attribute("db.redis.key", str(args[1]))


RedisInstrumentor().instrument(tracer_provider=provider, request_hook=record_key if os.environ.get("RECORD_KEYS") else None)
tracer = provider.get_tracer("redis_app")
r = redis.Redis(host="127.0.0.1", port=int(os.environ["REDIS_PORT"]))
r.flushall()

hits = misses = 0
for i in range(READS):
    k = (i * 7) % 50 if i % 30 else 1000 + i
    with tracer.start_as_current_span("GET /product", kind=SpanKind.SERVER):
        key = f"product:{k}"
        if r.get(key) is None:
            misses += 1
            r.set(key, "cached")
        else:
            hits += 1
for i in range(SESSIONS):
    with tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
        r.set(f"session:{9000 + i}", "token")

provider.force_flush()
provider.shutdown()
assert hits + misses == READS
print(json.dumps({"reads": READS, "hits": hits, "misses": misses, "sessions": SESSIONS}))
