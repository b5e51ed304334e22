"""Drive Oxeye's Elasticsearch API with the official Python client.

Run by tests/logs_elasticsearch.rs with ES_URL set, once with elasticsearch 8
and once with 9 on PYTHONPATH. Indexes ES_DOCS generated documents with
helpers.bulk, then checks searches and aggregations against answers computed
here from the same documents. Prints one JSON summary line at the end.
"""

import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import elasticsearch
from elasticsearch import Elasticsearch, helpers

URL = os.environ["ES_URL"]
N = int(os.environ.get("ES_DOCS", "100000"))
INDEX = os.environ.get("ES_INDEX", "weblogs")
MAJOR = elasticsearch.__version__[0]

es = Elasticsearch(URL, request_timeout=120)
info = es.info()
assert info["version"]["number"].startswith("8."), info
assert info["tagline"] == "You Know, for Search"

es.options(ignore_status=[404]).indices.delete(index=INDEX)
es.indices.create(
    index=INDEX,
    mappings={
        "properties": {
            "@timestamp": {"type": "date"},
            "message": {"type": "match_only_text"},
            "host": {"properties": {"name": {"type": "keyword"}}},
            "status": {"type": "long"},
            "duration": {"type": "double"},
        }
    },
)

rng = random.Random(42)
now = datetime.now(timezone.utc).replace(microsecond=0)
start = now - timedelta(minutes=50)
paths = ["/", "/login", "/api/items", "/api/orders", "/static/app.js", "/health"]
words = ["cache", "miss", "timeout", "upstream", "retry", "slow", "ok", "user", "checkout"]
hosts = [f"web-{i:02d}" for i in range(17)]
docs = []
for i in range(N):
    ts = start + timedelta(milliseconds=i * (45 * 60 * 1000 // N))
    status = rng.choice([200, 200, 200, 200, 201, 301, 404, 500, 503])
    path = rng.choice(paths)
    extra = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
    docs.append(
        {
            "_id": f"d{i}",
            "@timestamp": ts.isoformat().replace("+00:00", "Z"),
            "message": f"GET {path} {status} {extra}",
            "host": {"name": rng.choice(hosts)},
            "status": status,
            "bytes": rng.randint(0, 50000),
            "duration": round(rng.random() * 2.0, 4),
            "user": {"id": f"u{rng.randint(1, 500)}"},
        }
    )

t0 = time.time()
ok, errors = helpers.bulk(
    es,
    ({"_index": INDEX, **d} for d in docs),
    chunk_size=2000,
    raise_on_error=False,
)
bulk_seconds = time.time() - t0
assert ok == N and not errors, (ok, errors[:3])
es.indices.refresh(index=INDEX)

# ---- expectations computed from the documents ----
by_status = Counter(d["status"] for d in docs)
total_bytes = sum(d["bytes"] for d in docs)
avg_duration = sum(d["duration"] for d in docs) / N
per_minute = Counter()
for d in docs:
    t = datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00"))
    per_minute[int(t.replace(second=0, microsecond=0).timestamp() * 1000)] += 1
bytes_per_minute = defaultdict(int)
for d in docs:
    t = datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00"))
    bytes_per_minute[int(t.replace(second=0, microsecond=0).timestamp() * 1000)] += d["bytes"]
timeouts = sum(1 for d in docs if "timeout" in d["message"].split())
phrase = sum(1 for d in docs if "upstream retry" in d["message"])
errors_5xx = [d for d in docs if d["status"] >= 500]
host_count = Counter(d["host"]["name"] for d in docs)

def total(resp):
    t = resp["hits"]["total"]
    return t["value"] if isinstance(t, dict) else t

assert es.count(index=INDEX)["count"] == N
assert total(es.search(index=INDEX, query={"term": {"status": 503}}, size=0, track_total_hits=True)) == by_status[503]
assert total(es.search(index=INDEX, query={"range": {"status": {"gte": 500}}}, size=0, track_total_hits=True)) == len(errors_5xx)
assert total(es.search(index=INDEX, query={"match": {"message": "timeout"}}, size=0, track_total_hits=True)) == timeouts
assert total(es.search(index=INDEX, query={"match_phrase": {"message": "upstream retry"}}, size=0, track_total_hits=True)) == phrase
got = total(es.search(index=INDEX, query={"query_string": {"query": "status:[500 TO 599] AND host.name:web-03"}}, size=0, track_total_hits=True))
assert got == sum(1 for d in errors_5xx if d["host"]["name"] == "web-03"), got
got = total(es.search(index="web*", query={"bool": {
    "filter": [{"terms": {"host.name": ["web-01", "web-02"]}}],
    "must_not": [{"term": {"status": 200}}],
    "should": [{"prefix": {"user.id": "u1"}}, {"wildcard": {"user.id": "u2?"}}],
    "minimum_should_match": 1}}, size=0, track_total_hits=True))
want = sum(1 for d in docs if d["host"]["name"] in ("web-01", "web-02") and d["status"] != 200
           and (d["user"]["id"].startswith("u1") or (d["user"]["id"].startswith("u2") and len(d["user"]["id"]) == 3)))
assert got == want, (got, want)
# Date math on @timestamp: everything is within the last hour.
assert total(es.search(index=INDEX, query={"range": {"@timestamp": {"gte": "now-1h", "lte": "now"}}}, size=0, track_total_hits=True)) == N
# Default track_total_hits caps at 10000.
r = es.search(index=INDEX, size=0)
assert r["hits"]["total"] == {"value": 10000, "relation": "gte"}, r["hits"]["total"]

# ---- aggregations ----
r = es.search(index=INDEX, size=0, aggs={
    "per_minute": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                   "aggs": {"bytes": {"sum": {"field": "bytes"}}}},
    "status": {"terms": {"field": "status", "size": 20}},
    "hosts": {"terms": {"field": "host.name", "size": 3}},
    "avg_duration": {"avg": {"field": "duration"}},
    "max_bytes": {"max": {"field": "bytes"}},
    "min_bytes": {"min": {"field": "bytes"}},
    "sum_bytes": {"sum": {"field": "bytes"}},
    "count": {"value_count": {"field": "status"}},
    "distinct_hosts": {"cardinality": {"field": "host.name"}},
    "p": {"percentiles": {"field": "duration", "percents": [50, 99]}},
    "bytes_hist": {"histogram": {"field": "bytes", "interval": 10000}},
})
a = r["aggregations"]
buckets = {b["key"]: b for b in a["per_minute"]["buckets"]}
assert {k: b["doc_count"] for k, b in buckets.items() if b["doc_count"]} == dict(per_minute), "per-minute counts differ"
for k, b in buckets.items():
    if b["doc_count"]:
        assert b["bytes"]["value"] == bytes_per_minute[k], (k, b["bytes"], bytes_per_minute[k])
assert {b["key"]: b["doc_count"] for b in a["status"]["buckets"]} == dict(by_status)
top3 = [b["key"] for b in a["hosts"]["buckets"]]
assert [host_count[h] for h in top3] == sorted(host_count.values(), reverse=True)[:3], top3
assert a["hosts"]["sum_other_doc_count"] == N - sum(host_count[h] for h in top3)
assert abs(a["avg_duration"]["value"] - avg_duration) < 1e-6
assert a["max_bytes"]["value"] == max(d["bytes"] for d in docs)
assert a["min_bytes"]["value"] == min(d["bytes"] for d in docs)
assert a["sum_bytes"]["value"] == total_bytes
assert a["count"]["value"] == N
assert a["distinct_hosts"]["value"] == len(hosts)
durations = sorted(d["duration"] for d in docs)
p50 = a["p"]["values"]["50.0"]
assert abs(p50 - durations[N // 2]) < 0.02, p50
assert sum(b["doc_count"] for b in a["bytes_hist"]["buckets"]) == N

# Terms then date histogram (what Grafana sends), with epoch_millis keys.
r = es.search(index=INDEX, size=0, query={"bool": {"filter": {"range": {"@timestamp": {
    "gte": int(start.timestamp() * 1000), "lte": int(now.timestamp() * 1000), "format": "epoch_millis"}}}}},
    aggs={"3": {"terms": {"field": "status", "order": {"_key": "desc"}, "size": 10, "min_doc_count": 1},
                "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "10m",
                                                  "min_doc_count": 0, "format": "epoch_millis"}}}}})
first = r["aggregations"]["3"]["buckets"][0]
assert first["key"] == max(by_status)
assert sum(b["doc_count"] for b in first["2"]["buckets"]) == by_status[max(by_status)]
assert first["2"]["buckets"][0]["key_as_string"] == str(first["2"]["buckets"][0]["key"])

# ---- sorting, paging with search_after, _source filtering ----
seen = []
after = None
while True:
    kwargs = {"search_after": after} if after else {}
    page = es.search(index=INDEX, query={"term": {"status": 500}}, size=700,
                     sort=[{"@timestamp": "asc"}, {"bytes": "desc"}], _source=["status", "host.*"], **kwargs)
    hits = page["hits"]["hits"]
    if not hits:
        break
    for h in hits:
        assert set(h["_source"]) <= {"status", "host"}, h["_source"]
        seen.append(h["_id"])
    after = hits[-1]["sort"]
assert len(seen) == by_status[500] and len(set(seen)) == len(seen), (len(seen), by_status[500])
want_order = [d["_id"] for d in sorted((d for d in docs if d["status"] == 500), key=lambda d: (datetime.fromisoformat(d["@timestamp"].replace("Z", "+00:00")), -d["bytes"]))]
assert seen == want_order, "search_after order differs"
r = es.search(index=INDEX, size=5, sort=[{"bytes": {"order": "desc"}}], from_=2)
assert [h["_source"]["bytes"] for h in r["hits"]["hits"]] == sorted((d["bytes"] for d in docs), reverse=True)[2:7]

# ---- msearch, count with query, mapping, field caps ----
ms = es.msearch(searches=[
    {"index": INDEX}, {"size": 0, "query": {"term": {"status": 404}}, "track_total_hits": True},
    {"index": "missing-index"}, {"query": {"match_all": {}}},
    {"index": INDEX}, {"query": {"no_such_query": {}}},
])["responses"]
assert total(ms[0]) == by_status[404] and ms[0]["status"] == 200
assert ms[1]["status"] == 404 and ms[1]["error"]["type"] == "index_not_found_exception"
assert ms[2]["status"] == 400 and "no_such_query" in ms[2]["error"]["reason"]
assert es.count(index=INDEX, query={"match": {"message": "timeout"}})["count"] == timeouts
mapping = es.indices.get_mapping(index=INDEX)[INDEX]["mappings"]["properties"]
assert mapping["status"]["type"] == "long" and mapping["host"]["properties"]["name"]["type"] == "keyword"
assert mapping["user"]["properties"]["id"]["type"] == "text"
caps = es.field_caps(index=INDEX, fields="*")["fields"]
assert caps["status"]["long"]["aggregatable"] is True
assert caps["user.id.keyword"]["keyword"]["aggregatable"] is True

# ---- single documents, conflicts, per-item errors, unsupported clauses ----
es.index(index=INDEX, id="single", document={"@timestamp": now.isoformat(), "message": "one off", "status": 418}, refresh=True)
assert es.get(index=INDEX, id="single")["_source"]["status"] == 418
try:
    es.create(index=INDEX, id="single", document={"message": "again"})
    raise AssertionError("create of an existing id must conflict")
except elasticsearch.ConflictError:
    pass
resp = es.bulk(operations=[
    {"index": {"_index": INDEX}}, {"status": "not-a-number", "@timestamp": now.isoformat()},
    {"index": {"_index": INDEX}}, {"status": 299, "@timestamp": now.isoformat()},
], refresh=True)
assert resp["errors"] is True
assert resp["items"][0]["index"]["status"] == 400
assert resp["items"][0]["index"]["error"]["type"] == "document_parsing_exception"
assert resp["items"][1]["index"]["status"] == 201
assert es.count(index=INDEX, query={"term": {"status": 299}})["count"] == 1
try:
    es.search(index=INDEX, query={"geo_shape": {"location": {}}})
    raise AssertionError("unsupported query must fail")
except elasticsearch.BadRequestError as err:
    assert "geo_shape" in str(err), err
try:
    es.search(index="no-such-index")
    raise AssertionError("missing index must fail")
except elasticsearch.NotFoundError:
    pass

print(json.dumps({"client": elasticsearch.__versionstr__, "docs": N, "bulk_seconds": round(bulk_seconds, 2)}))
