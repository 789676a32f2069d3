"""``pimq status``: the student's queues and the workers serving them (AMQP only)."""

from __future__ import annotations

import json

from pimq.client.state import tracked_jobs
from pimq.config import StudentConfig
from pimq.protocol import topology
from pimq.protocol.session import Session


def status(cfg: StudentConfig, as_json: bool = False) -> int:
    rows = []
    with Session(cfg, "pimq status") as s:
        for name in (topology.TASKS, topology.DEAD):
            rows.append({"queue": name, "found": s.probe_queue(name)})
        for job, kind, pid in tracked_jobs():
            rows.append(
                {
                    "queue": topology.result_queue(job),
                    "job": job,
                    "kind": kind,
                    "pid": pid,
                    "found": s.probe_queue(topology.result_queue(job)),
                }
            )
    tasks = rows[0]["found"]
    workers = tasks[1] if tasks else 0
    if as_json:
        doc = {
            "host": cfg.host,
            "vhost": cfg.vhost,
            "workers": workers,
            "queues": [
                {k: v for k, v in r.items() if k != "found"}
                | {
                    "messages": r["found"][0] if r["found"] else None,
                    "consumers": r["found"][1] if r["found"] else None,
                }
                for r in rows
            ],
        }
        print(json.dumps(doc))
        return 0
    print(f"vhost {cfg.vhost} on {cfg.host}:{cfg.port} ({'TLS' if cfg.ca else 'plaintext'})")
    print(f"workers consuming {topology.TASKS}: {workers}")
    print(f"{'queue':<36} {'messages':>9} {'consumers':>9}")
    for r in rows:
        found = r["found"]
        label = r["queue"] + (f" ({r['kind']})" if "kind" in r else "")
        if found is None:
            print(f"{label:<36} {'(none)':>9}")
        else:
            print(f"{label:<36} {found[0]:>9} {found[1]:>9}")
    return 0
