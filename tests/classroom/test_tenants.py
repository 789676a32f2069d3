"""Every broker holds every tenant with exactly the rights the design gives: a
student all rights on their own vhost only (and on the head, publishing to the
teacher's record), pimq-worker ^pimq\\. on each, the limits.
(What those rights refuse when tried: the tenant matrix, guest and the pimq-worker
user in tests/chaos/test_security.py, which runs in CI as well.)"""

from __future__ import annotations

import pytest
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]


def test_every_broker_has_every_tenant(converged, room):
    for node in room.nodes:
        d = nodes.broker_definitions(node)
        vhosts = {v["name"] for v in d["vhosts"]}
        users = {u["name"]: u for u in d["users"]}
        perms = {
            (p["user"], p["vhost"]): (p["configure"], p["write"], p["read"])
            for p in d["permissions"]
        }
        limits = {
            p["vhost"]: p["value"] for p in d["parameters"] if p["component"] == "vhost-limits"
        }
        # the head broker also holds the teacher's record: students may only
        # publish a job's summary there (roles/pimq_page, tests/classroom/test_page.py)
        record = ["pimq-teacher"] if node == room.head else []
        for s in room.students:
            assert s in vhosts and s in users, (node, s)
            assert sorted(v for (u, v) in perms if u == s) == sorted([s, *record]), (
                f"{s} has rights beyond its vhost on {node}"
            )
            if record:
                assert perms[(s, "pimq-teacher")] == ("^$", r"^pimq\.record$", "^$")
            assert perms[(s, s)] == (".*", ".*", ".*")
            assert perms[("pimq-worker", s)] == (r"^pimq\.",) * 3
            assert limits[s] == {"max-connections": 64, "max-queues": 64}
            caps = {p["name"]: p for p in d["policies"] if p["vhost"] == s}
            assert set(caps) == {"pimq-caps", "pimq-caps-data"}, (node, s)
            assert caps["pimq-caps"]["pattern"] == ".*"
            assert caps["pimq-caps"]["definition"] == {
                "max-length-bytes": 1048576,
                "max-length": 1000,
                "overflow": "reject-publish",
            }
            assert caps["pimq-caps-data"]["definition"]["max-length-bytes"] == 33554432
            assert caps["pimq-caps-data"]["priority"] == 101
        assert "administrator" in users["pimq-admin"]["tags"]
