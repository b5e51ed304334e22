"""Credentials with real clients against an Oxeye that requires them.

env: ES_URL, OTLP_GRPC (host:port), OTLP_HTTP (http://host:port),
     WRITE_TOKEN (role write, token name "collector"),
     READ_USER / READ_PASSWORD (basic auth, role read),
     CA_FILE (optional: the listeners speak TLS; trust this CA).
The elasticsearch client with api_key (the key itself and an (id, key)
pair) and basic_auth; the OpenTelemetry SDK's span exporters over gRPC and
HTTP with an `authorization` header, and without one.
Prints one JSON line: the number of checks made and the trace ids sent.
"""
import datetime
import json
import os

from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

es_url = os.environ["ES_URL"]
token = os.environ["WRITE_TOKEN"]
user, password = os.environ["READ_USER"], os.environ["READ_PASSWORD"]
ca_file = os.environ.get("CA_FILE")
tls = {"ca_certs": ca_file} if ca_file else {}
checks = 0
now = datetime.datetime.now(datetime.timezone.utc).isoformat()


def check(condition, what):
    global checks
    if not condition:
        raise SystemExit(f"check failed: {what}")
    checks += 1


def refused(call, exception):
    try:
        call()
    except exception:
        return True
    return False


# --- Elasticsearch clients ---------------------------------------------------
writer = Elasticsearch(es_url, api_key=token, **tls)
result = writer.bulk(operations=[{"index": {"_index": "auth-logs"}}, {"message": "from the writer", "@timestamp": now}], refresh=True)
check(not result["errors"], f"bulk with an api key: {result}")
pair = Elasticsearch(es_url, api_key=("collector", token), **tls)
result = pair.index(index="auth-logs", document={"message": "from the pair", "@timestamp": now}, refresh=True)
check(result["result"] == "created", f"index with an (id, key) api key: {result}")
check(refused(lambda: writer.search(index="auth-logs"), AuthorizationException), "a write-only key cannot search")
check(refused(lambda: Elasticsearch(es_url, api_key=("someone-else", token), **tls).search(index="auth-logs"), AuthenticationException),
      "an api key under another id is refused")

reader = Elasticsearch(es_url, basic_auth=(user, password), **tls)
hits = reader.search(index="auth-logs", query={"match": {"message": "from"}})["hits"]["total"]["value"]
check(hits == 2, f"basic auth reader sees both records, got {hits}")
check(refused(lambda: reader.index(index="auth-logs", document={"message": "x"}), AuthorizationException),
      "a reader cannot write")
check(refused(lambda: Elasticsearch(es_url, **tls).search(index="auth-logs"), AuthenticationException), "no credentials")
check(refused(lambda: Elasticsearch(es_url, basic_auth=(user, "wrong"), **tls).search(index="auth-logs"), AuthenticationException),
      "a wrong password")

# --- OpenTelemetry exporters -------------------------------------------------
memory = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "auth-test"}))
provider.add_span_processor(SimpleSpanProcessor(memory))
tracer = provider.get_tracer("oxeye.auth")
sent = []
header = {"authorization": f"Bearer {token}"}
for transport in ("grpc", "http"):
    for authorized in (True, False):
        with tracer.start_as_current_span(f"{transport} {'with' if authorized else 'without'} credentials") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
        spans = memory.get_finished_spans()[-1:]
        headers = header if authorized else None
        if transport == "grpc" and ca_file:
            import grpc

            with open(ca_file, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            exporter = GrpcExporter(endpoint=os.environ["OTLP_GRPC"], insecure=False, credentials=credentials,
                                    headers=headers, timeout=10)
        elif transport == "grpc":
            exporter = GrpcExporter(endpoint=os.environ["OTLP_GRPC"], insecure=True, headers=headers, timeout=10)
        else:
            exporter = HttpExporter(endpoint=os.environ["OTLP_HTTP"] + "/v1/traces", headers=headers, timeout=10,
                                    certificate_file=ca_file if ca_file else None)
        outcome = exporter.export(spans)
        exporter.shutdown()
        if authorized:
            check(outcome == SpanExportResult.SUCCESS, f"{transport} export with a bearer token: {outcome}")
            sent.append(trace_id)
        else:
            check(outcome == SpanExportResult.FAILURE, f"{transport} export without credentials: {outcome}")

print(json.dumps({"checks": checks, "trace_ids": sent}))
