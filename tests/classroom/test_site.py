"""site.yml converges, is idempotent, and --check --diff on a converged room is a no-op."""

from __future__ import annotations

import pytest
from support import nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(1800)]


def test_site_converges(converged, room):
    run = converged.first
    assert run.rc == 0, run.tail()
    assert set(room.nodes) <= set(run.recap), run.recap
    assert run.total("failed") == 0 and run.total("unreachable") == 0, run.recap
    print(f"converge (-vvv): {run.seconds:.0f} s, changed={run.total('changed')}")


def test_second_run_changes_nothing(converged):
    run = converged.second
    assert run.rc == 0, run.tail()
    changed = {h: r["changed"] for h, r in run.recap.items() if r["changed"]}
    assert not changed, f"second run changed something: {changed}\n{run.tail(120)}"
    print(f"second run: {run.seconds:.0f} s, changed=0")


def test_check_diff_changes_nothing_and_fails_nothing(converged):
    run = converged.check
    assert run.rc == 0, run.tail()
    assert run.total("failed") == 0, run.tail()
    changed = {h: r["changed"] for h, r in run.recap.items() if r["changed"]}
    assert not changed, f"--check --diff reports changes: {changed}\n{run.tail(120)}"
    print(f"--check --diff: {run.seconds:.0f} s, changed=0")


def test_every_node_resolves_every_other(converged, room):
    for node in room.nodes:
        for other in room.nodes:
            out = nodes.on_node(node, ["getent", "hosts", other]).stdout
            assert other in out, (node, other, out)


def test_status_reports_brokers_workers_and_queues(converged, room):
    run = nodes.playbook("status.yml")
    assert run.rc == 0, run.tail()
    assert run.total("changed") == 0
    for node in room.nodes:
        assert f"node {node} (" in run.output
    assert run.output.count("rabbitmq-server: active") == len(room.nodes), run.tail(100)
    assert run.output.count("pimq-worker: active") == len(room.workers), run.tail(100)
    for name in room.students:
        assert f"- {name:<12} pimq.tasks" in run.output, run.tail(100)


def test_a_pi_left_with_dpkg_interrupted_is_repaired(converged, room, converge_vars):
    """A Pi that lost power mid-install has a dpkg journal left behind and every
    apt run fails ("dpkg was interrupted") until `dpkg --configure -a`: the role
    finishes that work itself before installing what is missing."""
    pi = room.workers[-1]
    extra_package = "tmux"  # in the room's mirror (the head's), not installed on a worker
    nodes.on_node(pi, ["dpkg", "--purge", extra_package], check=False)
    nodes.on_node(pi, ["touch", "/var/lib/dpkg/updates/0000"])  # what a power cut leaves
    install = ["apt-get", "install", "-y", "--no-download", extra_package]
    blocked = nodes.on_node(pi, install, check=False)
    assert "dpkg was interrupted" in blocked.stdout + blocked.stderr, blocked

    extra = {**converge_vars, "pimq_common_extra_packages": [extra_package]}
    run = nodes.playbook("common.yml", "--limit", pi, extra_vars=extra)
    assert run.rc == 0, run.tail(80)
    assert nodes.on_node(pi, ["ls", "/var/lib/dpkg/updates"]).stdout.strip() == ""
    status = nodes.on_node(pi, ["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", extra_package])
    assert status.stdout.startswith("ii"), status.stdout
    nodes.on_node(pi, ["dpkg", "--purge", extra_package])
