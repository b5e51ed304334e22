"""Oxeye's read side under the users who read it, for Locust.

    python3 -m locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 5m \
        --host http://127.0.0.1:9090 --csv oxeye --html oxeye.html

Users (weights in brackets; pick some with their class names on the command
line, e.g. `DashboardUser`):

- DashboardUser [6]: a Grafana dashboard of 12 Prometheus panels over the
  last OXEYE_LOCUST_RANGE (6h), refreshed every OXEYE_LOCUST_REFRESH (15 s):
  each refresh sends the 12 query_range requests at once, with Grafana's
  step (the range over the panel's max data points, rounded as Grafana's
  kbn.roundInterval does, at least 15 s) and its alignment of start and end
  to the step.
- ExploreUser [2]: Grafana Explore: label values when it opens, then
  ad-hoc queries run as a range and an instant query at once.
- LogsUser [1]: Grafana's Elasticsearch data source against the
  Elasticsearch API (OXEYE_ES_URL, http://127.0.0.1:9200): a log search and
  the logs volume histogram at once, both through _msearch as Grafana
  sends them.
- TracesUser [1]: the Jaeger UI: services, a trace search, then the first
  trace found.

The metric panels read OXEYE_LOCUST_METRIC (loadgen_rw_metric_), the series
`oxeye loadgen --backfill` writes; the logs read OXEYE_LOCUST_INDEX
(loadgen), the records of its es-bulk protocol; the traces its spans
(services loadgen-svc-N). Every answer is checked (status, Prometheus'
`"status":"success"`, Elasticsearch's per-search status): anything else is
a failure in Locust's report.
"""

import json
import logging
import os
import random
import time

import gevent
from locust import HttpUser, between, constant_pacing, task

# A dashboard refresh opens more connections than requests' pool keeps
# (browsers do the same); the discarded ones are not worth a warning each.
logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)

METRIC = os.environ.get("OXEYE_LOCUST_METRIC", "loadgen_rw_metric_")
INDEX = os.environ.get("OXEYE_LOCUST_INDEX", "loadgen")
ES_URL = os.environ.get("OXEYE_ES_URL", "http://127.0.0.1:9200")


def seconds(text):
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


RANGE = seconds(os.environ.get("OXEYE_LOCUST_RANGE", "6h"))
REFRESH = seconds(os.environ.get("OXEYE_LOCUST_REFRESH", "15s"))

# kbn.roundInterval: (upper bound in ms, rounded interval in ms).
ROUNDING = [
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
    (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
    (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000),
    (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000),
]


def round_interval(ms):
    for bound, value in ROUNDING:
        if ms < bound:
            return value
    return 2592000000


def grafana_range(range_s, max_points, min_step_s=15):
    """Grafana's Prometheus range: step and the aligned start and end."""
    now = time.time()
    step = max(min_step_s, round_interval(range_s * 1000 / max_points) / 1000)
    end = (now // step) * step
    start = ((now - range_s) // step) * step
    return start, end, step


PANELS = [
    f"sum(rate({METRIC}0[5m]))",
    f"sum by (instance) (rate({METRIC}1[5m]))",
    f"topk(5, sum by (instance) (rate({METRIC}2[5m])))",
    f"avg({METRIC}3)",
    f"max(max_over_time({METRIC}4[10m]))",
    f"count({METRIC}5)",
    f"quantile(0.9, rate({METRIC}6[5m]))",
    f"sum(increase({METRIC}7[1h]))",
    f"stddev({METRIC}8)",
    f"sum by (job) (rate({METRIC}9[5m]))",
    f"count by (instance) ({METRIC}0 > 100)",
    f"sum(rate({METRIC}1[5m])) / sum(rate({METRIC}2[5m]))",
]

EXPLORE = [
    f"{METRIC}3",
    f"rate({METRIC}4[1m])",
    f"sum by (instance) ({METRIC}5)",
    f"histogram_quantile(0.5, sum by (le) (rate({METRIC}6[5m])))",
    f"{METRIC}7 offset 1h",
    f"absent({METRIC}8)",
]


def check_prometheus(response):
    """A Prometheus API answer: 200 and "status":"success" (read from the
    ends of the body: a dashboard's answers are megabytes of JSON, and
    parsing them all would make this client, not the server, the thing
    measured)."""
    if response.status_code != 200:
        response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
        return False
    body = response.content
    # Either end of the object (the query API writes "status" first, the
    # label APIs last, both as Prometheus may).
    if b'"status":"success"' not in body[:64] and b'"status":"success"' not in body[-64:]:
        response.failure(f"not a success: {response.text[:200]}")
        return False
    response.success()
    return True


def msearch_body(searches):
    lines = []
    for search in searches:
        lines.append(json.dumps({"search_type": "query_then_fetch", "ignore_unavailable": True, "index": INDEX}))
        lines.append(json.dumps(search))
    return "\n".join(lines) + "\n"


class DashboardUser(HttpUser):
    """A browser tab with a 12-panel dashboard, refreshing."""

    weight = 6
    wait_time = constant_pacing(REFRESH)

    @task
    def refresh(self):
        start, end, step = grafana_range(RANGE, 1200)

        def panel(n, expr):
            with self.client.post(
                "/api/v1/query_range",
                data={"query": expr, "start": start, "end": end, "step": step},
                name=f"dashboard panel {n:02d}",
                catch_response=True,
            ) as response:
                check_prometheus(response)

        # A browser sends the panels' queries at once.
        gevent.joinall([gevent.spawn(panel, n, expr) for n, expr in enumerate(PANELS)])


class ExploreUser(HttpUser):
    """Someone in Explore: the metric browser's label values when it opens,
    then queries, each run as Grafana's "Both" (a range and an instant
    query at once)."""

    weight = 2
    wait_time = between(3, 10)

    def on_start(self):
        now = time.time()
        with self.client.get(
            "/api/v1/label/instance/values",
            params={"match[]": f"{METRIC}0", "start": now - 3600, "end": now},
            name="explore label values",
            catch_response=True,
        ) as response:
            check_prometheus(response)

    @task
    def query(self):
        expr = random.choice(EXPLORE)
        start, end, step = grafana_range(random.choice([900, 3600, 3 * 3600]), 900)

        def range_query():
            with self.client.post(
                "/api/v1/query_range",
                data={"query": expr, "start": start, "end": end, "step": step},
                name="explore query_range",
                catch_response=True,
            ) as response:
                check_prometheus(response)

        def instant_query():
            with self.client.post(
                "/api/v1/query",
                data={"query": expr, "time": end},
                name="explore query",
                catch_response=True,
            ) as response:
                check_prometheus(response)

        gevent.joinall([gevent.spawn(range_query), gevent.spawn(instant_query)])


class LogsUser(HttpUser):
    """Grafana's Elasticsearch data source: logs and their volume."""

    weight = 1
    wait_time = between(5, 15)

    def msearch(self, name, searches):
        # An absolute URL: --host is Oxeye's HTTP API, not its Elasticsearch port.
        with self.client.post(
            f"{ES_URL}/_msearch",
            data=msearch_body(searches),
            headers={"Content-Type": "application/x-ndjson"},
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return None
            answers = response.json().get("responses", [])
            bad = [a for a in answers if a.get("status", 200) != 200 or "error" in a]
            if len(answers) != len(searches) or bad:
                response.failure(f"{len(bad)} failed searches: {str(bad)[:200]}")
                return None
            response.success()
            return answers

    def time_filter(self, range_s, now_ms=None):
        now_ms = now_ms or int(time.time() * 1000)
        return {"range": {"@timestamp": {"gte": now_ms - int(range_s * 1000), "lte": now_ms, "format": "epoch_millis"}}}

    def logs(self):
        query = random.choice(["status=500", "*", "log.level:ERROR", "took"])
        self.msearch(
            "logs search",
            [
                {
                    "size": 500,
                    "query": {"bool": {"filter": [self.time_filter(3600), {"query_string": {"analyze_wildcard": True, "query": query}}]}},
                    "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "boolean"}}, {"_doc": {"order": "desc"}}],
                    "script_fields": {},
                    "aggs": {},
                }
            ],
        )

    def volume(self):
        now_ms = int(time.time() * 1000)
        self.msearch(
            "logs volume",
            [
                {
                    "size": 0,
                    "query": {"bool": {"filter": [self.time_filter(3600, now_ms), {"query_string": {"analyze_wildcard": True, "query": "*"}}]}},
                    "aggs": {
                        "2": {
                            "date_histogram": {
                                "field": "@timestamp",
                                "fixed_interval": "1m",
                                "min_doc_count": 0,
                                "extended_bounds": {"min": now_ms - 3600000, "max": now_ms},
                                "format": "epoch_millis",
                            },
                            "aggs": {"3": {"terms": {"field": "log.level", "size": 10, "order": {"_count": "desc"}, "min_doc_count": 1}}},
                        }
                    },
                }
            ],
        )

    @task
    def explore_logs(self):
        """Grafana's logs Explore: the lines and their volume, at once."""
        gevent.joinall([gevent.spawn(self.logs), gevent.spawn(self.volume)])


class TracesUser(HttpUser):
    """The Jaeger UI: find traces of a service, open one."""

    weight = 1
    wait_time = between(5, 15)

    @task
    def search_and_view(self):
        with self.client.get("/api/services", name="jaeger services", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            services = response.json().get("data") or []
            response.success()
        if not services:
            return
        now_us = int(time.time() * 1e6)
        with self.client.get(
            "/api/traces",
            params={
                "service": random.choice(services),
                "limit": 20,
                "lookback": "1h",
                "start": now_us - 3600 * 10**6,
                "end": now_us,
            },
            name="jaeger search",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            traces = response.json().get("data") or []
            response.success()
        if traces:
            trace_id = traces[0]["traceID"]
            with self.client.get(f"/api/traces/{trace_id}", name="jaeger trace", catch_response=True) as response:
                if response.status_code != 200 or not response.json().get("data"):
                    response.failure(f"HTTP {response.status_code}")
                else:
                    response.success()
