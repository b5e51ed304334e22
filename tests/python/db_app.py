"""A small shop backend instrumented with the OpenTelemetry Python SDK and
the real sqlite3 instrumentation (opentelemetry-instrumentation-sqlite3),
exporting to Oxeye over OTLP/gRPC. A known workload:

- GET /orders, REQUESTS times: one query for 20 users, then one query per
  user for their items (an N+1 loop of 20 sequential calls);
- GET /orders/batched, once: the same in one query with IN (…);
- GET /events, SLOW times: a lookup by an unindexed column of a table of
  ROWS rows (a full scan each time);
- GET /cart, CARTS times: PRODUCTS sequential HTTP calls with `requests`
  (opentelemetry-instrumentation-requests) to a catalogue service on a
  loopback port, one per product (an N+1 of HTTP calls).

usage: OTLP_ENDPOINT=http://127.0.0.1:4317 db_app.py
Prints one JSON line with the trace ids of each endpoint and the counts.
"""
import json
import os
import sqlite3
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

REQUESTS = 10
SLOW = 5
ROWS = 200_000
USERS = 20
CARTS = 4
PRODUCTS = 8


class Catalogue(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


catalogue = ThreadingHTTPServer(("127.0.0.1", 0), Catalogue)
threading.Thread(target=catalogue.serve_forever, daemon=True).start()
CATALOGUE = f"http://127.0.0.1:{catalogue.server_address[1]}"

path = os.path.join(tempfile.mkdtemp(), "shop.db")
# Setup before instrumenting: only the requests below make spans.
setup = sqlite3.connect(path)
setup.executescript(
    """
    CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
    CREATE TABLE items (id INTEGER PRIMARY KEY, user_id INTEGER, title TEXT);
    CREATE INDEX items_user ON items (user_id);
    CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, payload TEXT);
    """
)
setup.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(i, f"user{i}") for i in range(1, USERS + 1)])
setup.executemany(
    "INSERT INTO items (user_id, title) VALUES (?, ?)",
    [(1 + i % USERS, f"item{i}") for i in range(USERS * 5)],
)
setup.executemany(
    "INSERT INTO events (kind, payload) VALUES (?, ?)",
    [(f"k{i % 1000}", "x" * 20) for i in range(ROWS)],
)
setup.commit()
setup.close()

provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["OTLP_ENDPOINT"], insecure=True)))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("db_app")
SQLite3Instrumentor().instrument(tracer_provider=provider)
RequestsInstrumentor().instrument(tracer_provider=provider)
db = sqlite3.connect(path)
cur = db.cursor()

traces = {"orders": [], "batched": [], "events": [], "cart": []}
for r in range(REQUESTS):
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as span:
        traces["orders"].append(format(span.get_span_context().trace_id, "032x"))
        users = cur.execute("SELECT id, name FROM users ORDER BY id LIMIT 20").fetchall()
        assert len(users) == USERS
        for uid, _ in users:
            cur.execute("SELECT id, title FROM items WHERE user_id = ?", (uid,)).fetchall()

with tracer.start_as_current_span("GET /orders/batched", kind=SpanKind.SERVER) as span:
    traces["batched"].append(format(span.get_span_context().trace_id, "032x"))
    users = cur.execute("SELECT id, name FROM users ORDER BY id LIMIT 20").fetchall()
    ids = ", ".join(str(u[0]) for u in users)
    cur.execute(f"SELECT id, title FROM items WHERE user_id IN ({ids})").fetchall()

for r in range(SLOW):
    with tracer.start_as_current_span("GET /events", kind=SpanKind.SERVER) as span:
        traces["events"].append(format(span.get_span_context().trace_id, "032x"))
        # An aggregate: SQLite scans the whole table inside execute().
        rows = cur.execute("SELECT count(*) FROM events WHERE kind = ?", (f"k{r}",)).fetchall()
        assert rows[0][0] == ROWS // 1000

session = requests.Session()
for r in range(CARTS):
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as span:
        traces["cart"].append(format(span.get_span_context().trace_id, "032x"))
        for product in range(1, PRODUCTS + 1):
            reply = session.get(f"{CATALOGUE}/products/{100 + product}?currency=EUR", timeout=5)
            assert reply.json()["path"].startswith(f"/products/{100 + product}")

provider.force_flush()
provider.shutdown()
catalogue.shutdown()
print(
    json.dumps(
        {
            "traces": traces,
            "requests": REQUESTS,
            "users": USERS,
            "slow": SLOW,
            "carts": CARTS,
            "products": PRODUCTS,
            "catalogue": CATALOGUE,
        }
    )
)
