"""Drive Oxeye's Elasticsearch API with opensearch-py (no product header
needed; POST /_bulk with application/json). Checks answers computed here."""

import os
import random
from datetime import datetime, timedelta, timezone

from opensearchpy import OpenSearch, helpers

client = OpenSearch(os.environ["ES_URL"], timeout=60)
assert client.info()["version"]["number"].startswith("8.")

rng = random.Random(7)
now = datetime.now(timezone.utc)
docs = []
for i in range(5000):
    docs.append({
        "_index": "app-logs",
        "@timestamp": (now - timedelta(seconds=i)).isoformat(),
        "level": rng.choice(["debug", "info", "warn", "error"]),
        "service": {"name": rng.choice(["cart", "checkout", "search"])},
        "latency_ms": rng.randint(1, 900),
        "message": rng.choice(["payment accepted", "payment declined by bank", "cache warmed"]),
    })
ok, errors = helpers.bulk(client, docs, chunk_size=1000)
assert ok == len(docs) and not errors
client.indices.refresh(index="app-logs")

assert client.count(index="app-logs")["count"] == len(docs)
declined = sum(1 for d in docs if "declined" in d["message"])
r = client.search(index="app-logs", body={"query": {"match_phrase": {"message": "payment declined"}}, "size": 0,
                                           "track_total_hits": True})
assert r["hits"]["total"]["value"] == declined, r["hits"]["total"]
slow_errors = sum(1 for d in docs if d["level"] == "error" and d["latency_ms"] > 500)
r = client.search(index="app-*", body={"query": {"bool": {"filter": [{"term": {"level": "error"}},
                                                                      {"range": {"latency_ms": {"gt": 500}}}]}},
                                        "size": 0, "track_total_hits": True})
assert r["hits"]["total"]["value"] == slow_errors
r = client.search(index="app-logs", body={"size": 0, "aggs": {"svc": {"terms": {"field": "service.name.keyword"},
                                                                     "aggs": {"avg": {"avg": {"field": "latency_ms"}}}}}})
for bucket in r["aggregations"]["svc"]["buckets"]:
    mine = [d["latency_ms"] for d in docs if d["service"]["name"] == bucket["key"]]
    assert bucket["doc_count"] == len(mine)
    assert abs(bucket["avg"]["value"] - sum(mine) / len(mine)) < 1e-9
r = client.search(index="app-logs", body={"query": {"query_string": {"query": "level:warn OR level:error"}},
                                           "sort": [{"@timestamp": "desc"}], "size": 3})
want = [d for d in docs if d["level"] in ("warn", "error")][:3]
assert [h["_source"]["@timestamp"] for h in r["hits"]["hits"]] == [d["@timestamp"] for d in want]
print("opensearch-py ok")
