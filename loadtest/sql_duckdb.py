"""SQL over Oxeye's stores against DuckDB over the same data in Parquet.

usage: OXEYE_URL=http://127.0.0.1:PORT OUT=dir python3 sql_duckdb.py
(loadtest/sql_bench.sh starts the server and loads the data first.)

Exports the columns the queries read from Oxeye (as an Arrow IPC stream,
through POST /api/v1/sql) to Parquet, then runs each query REPEAT times on
both and prints the median times, their ratio, and whether the answers
agree. DuckDB gets every core of the machine, as Oxeye does.
"""
import io
import json
import os
import statistics
import sys
import time
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

URL = os.environ["OXEYE_URL"].rstrip("/")
OUT = os.environ["OUT"]
REPEAT = int(os.environ.get("REPEAT", "5"))


def post(query, accept="application/json"):
    req = urllib.request.Request(
        URL + "/api/v1/sql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json", "Accept": accept},
    )
    with urllib.request.urlopen(req, timeout=3600) as resp:
        return resp.read()


def export(name, query):
    t = time.time()
    table = pa.ipc.open_stream(io.BytesIO(post(query, "application/vnd.apache.arrow.stream"))).read_all()
    path = os.path.join(OUT, name + ".parquet")
    pq.write_table(table, path)
    print(f"exported {table.num_rows} rows of {name} in {time.time() - t:.1f}s", file=sys.stderr)
    return path


logs = export("logs", 'SELECT service, severity, trace_id, "@timestamp" AS ts FROM logs')
spans = export("spans", "SELECT trace_id, service, name, start_time, duration_ms FROM spans")
probe = json.loads(post("SELECT trace_id FROM spans ORDER BY start_time DESC LIMIT 1"))["rows"][0][0]

db = duckdb.connect()
db.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{logs}')")
db.execute(f"CREATE VIEW spans AS SELECT * FROM read_parquet('{spans}')")

queries = [
    ("logs: count by service",
     "SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY service",
     "SELECT service, count(*) AS n FROM logs GROUP BY service ORDER BY service"),
    ("spans: count by service",
     "SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service",
     "SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service"),
    ("spans: one trace by id",
     f"SELECT count(*) FROM spans WHERE trace_id = '{probe}'",
     f"SELECT count(*) FROM spans WHERE trace_id = '{probe}'"),
    ("logs: one trace by id",
     f"SELECT count(*) FROM logs WHERE trace_id = '{probe}'",
     f"SELECT count(*) FROM logs WHERE trace_id = '{probe}'"),
    ("logs: per minute and severity",
     "SELECT date_bin(INTERVAL '1 minute', \"@timestamp\", TIMESTAMP '1970-01-01T00:00:00Z') AS m, severity, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2",
     "SELECT time_bucket(INTERVAL '1 minute', ts) AS m, severity, count(*) AS n FROM logs GROUP BY 1, 2 ORDER BY 1, 2"),
    ("spans: p50-ish latency per minute",
     "SELECT date_bin(INTERVAL '1 minute', start_time, TIMESTAMP '1970-01-01T00:00:00Z') AS m, avg(duration_ms) AS a, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
     "SELECT time_bucket(INTERVAL '1 minute', start_time) AS m, avg(duration_ms) AS a, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1"),
]


def timed(f):
    times = []
    result = None
    for _ in range(REPEAT):
        t = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def norm(rows):
    out = []
    for r in rows:
        cells = []
        for v in r:
            if isinstance(v, float):
                v = round(v, 6)
            elif hasattr(v, "isoformat"):
                v = v.isoformat().replace("+00:00", "Z")
            cells.append(str(v).replace("T", " ").rstrip("Z").split(".")[0] if isinstance(v, str) and v[:2] == "20" else v)
        out.append(cells)
    return out


print(f"{'query':36} {'Oxeye ms':>10} {'DuckDB ms':>10} {'ratio':>7}  agree")
for name, ours, theirs in queries:
    t_ours, a = timed(lambda: json.loads(post(ours))["rows"])
    t_duck, b = timed(lambda: db.execute(theirs).fetchall())
    agree = norm(a) == norm([list(r) for r in b])
    print(f"{name:36} {t_ours * 1000:10.1f} {t_duck * 1000:10.1f} {t_ours / t_duck:7.2f}  {'yes' if agree else 'NO'}")
