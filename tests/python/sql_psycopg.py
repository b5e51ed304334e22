"""Query Oxeye over the PostgreSQL protocol with psycopg 3.

usage: PG_PORT=… sql_psycopg.py
Prints one JSON object: the answers of a few queries, run with a
server-side parameter and without, in a transaction (psycopg's default)
and in autocommit mode.
"""
import json
import os

import psycopg

port = int(os.environ["PG_PORT"])
conninfo = f"host=127.0.0.1 port={port} user=oxeye dbname=oxeye"
if os.environ.get("PG_PASSWORD"):
    conninfo += " password=" + os.environ["PG_PASSWORD"]
out = {}
with psycopg.connect(conninfo) as conn:
    with conn.cursor() as cur:
        cur.execute("SELECT service, count(*) AS n FROM spans GROUP BY service ORDER BY service")
        out["by_service"] = [[r[0], r[1]] for r in cur.fetchall()]
        out["columns"] = [d.name for d in cur.description]
        cur.execute("SELECT count(*) FROM spans WHERE service = %s AND status_code = %s", ("checkout", "ERROR"))
        out["errors"] = cur.fetchone()[0]
        cur.execute("SELECT max(start_time) FROM spans")
        out["latest"] = cur.fetchone()[0].isoformat()
        try:
            cur.execute("SELECT * FROM no_such_table")
        except psycopg.Error as e:
            out["error_state"] = e.sqlstate
            out["error_message"] = str(e)
    conn.rollback()
with psycopg.connect(conninfo, autocommit=True) as conn:
    out["autocommit"] = conn.execute("SELECT 1 + 1").fetchone()[0]
    try:
        conn.execute("CREATE VIEW v AS SELECT 1")
    except psycopg.Error as e:
        out["write_state"] = e.sqlstate
print(json.dumps(out))
