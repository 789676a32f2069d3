"""The roles' task filters (pimq_hosts_block, pimq_job_module_paths,
pimq_runtime_files, pimq_head_accounts), loaded from their plugin files as
Ansible loads them; expected values worked out by hand."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from support.plugins import filter_plugin

IP_RE = r"^[0-9.]+$|^[0-9a-fA-F:]+:[0-9a-fA-F:.]*$"  # pimq_common_ip_re


hosts = filter_plugin("pimq_common", "pimq_hosts")
runtime = filter_plugin("pimq_runtime", "pimq_runtime")
head = filter_plugin("pimq_head", "pimq_head")
tls = filter_plugin("pimq_broker", "pimq_tls")


# --- /etc/hosts ---------------------------------------------------------------------
HOSTVARS = {
    "head": {"ansible_host": "10.0.0.1"},
    "Pi-B": {"pimq_address": "192.168.1.5", "ansible_host": "pi-b.local"},
    "pi-a": {
        "ansible_host": "pi-a.local",
        "ansible_facts": {"default_ipv4": {"address": "10.0.0.7"}},
    },
    "pi-c": {"ansible_host": "fe80::1"},
    "pi-d": {"ansible_host": "pi-d.local", "ansible_facts": {}},
    "pi-e": {"ansible_host": "pi-e.local", "ansible_facts": {"default_ipv4": {}}},
    "Zeta": {"pimq_address": ""},
    "alpha": {"ansible_host": "10.0.0.9", "pimq_address": "10.9.9.9"},
    "beta": {},
}


def test_hosts_block_address_by_precedence_sorted_ignoring_case() -> None:
    block = hosts.hosts_block(list(HOSTVARS), HOSTVARS, IP_RE)
    assert block == (
        "10.9.9.9 alpha\n"  # pimq_address wins over an address in ansible_host
        "10.0.0.1 head\n"  # ansible_host is an IPv4 address
        "10.0.0.7 pi-a\n"  # ansible_host is a name: the default IPv4 of the facts
        "192.168.1.5 Pi-B\n"  # pimq_address wins over a name; sorted as "pi-b"
        "fe80::1 pi-c\n"  # ansible_host is an IPv6 address
    )  # beta, pi-d, pi-e: no address anywhere; Zeta: pimq_address empty


def test_hosts_block_of_no_host_is_empty() -> None:
    assert hosts.hosts_block([], {}, IP_RE) == ""


def test_hosts_block_is_registered() -> None:
    assert hosts.FilterModule().filters() == {"pimq_hosts_block": hosts.hosts_block}


@pytest.mark.parametrize(
    ("names", "hostvars", "ip_re", "error"),
    [
        ("head", HOSTVARS, IP_RE, "expects a list of host names, got str"),
        (["head", "ghost"], HOSTVARS, IP_RE, "no hostvars for host 'ghost'"),
        (["head"], HOSTVARS, "[0-9", "is not a regex"),
    ],
)
def test_hosts_block_bad_input(names, hostvars, ip_re, error) -> None:
    with pytest.raises(AnsibleFilterError, match=error):
        hosts.hosts_block(names, hostvars, ip_re)


# --- the runtime's files --------------------------------------------------------------
def test_job_module_paths_relative_to_the_folder_absolute_as_given() -> None:
    paths = runtime.job_module_paths(["primes.py", "/srv/jobs/wc.py", "sub/pi.py"], "/inv/jobs")
    assert paths == ["/inv/jobs/primes.py", "/srv/jobs/wc.py", "/inv/jobs/sub/pi.py"]


def test_runtime_files_wheel_first_then_each_job_module_in_order() -> None:
    files = runtime.runtime_files(
        ["primes.py", "/srv/jobs/wc.py", "primes.py"],
        ["P = 1\n", "W = 2", "P = 1\n"],
        "/opt/pimq",
        "/repo/build/wheel/pimq-0.1.0-py3-none-any.whl",
        "UEsDBA==",
    )
    root = {"owner": "root", "group": "root", "mode": "0644"}
    assert files == [
        {"path": "/opt/pimq/wheels/pimq-0.1.0-py3-none-any.whl", **root, "content_b64": "UEsDBA=="},
        {"path": "/opt/pimq/jobs/primes.py", **root, "content": "P = 1\n"},
        {"path": "/opt/pimq/jobs/wc.py", **root, "content": "W = 2"},
        {"path": "/opt/pimq/jobs/primes.py", **root, "content": "P = 1\n"},
    ]


def test_runtime_files_without_job_modules_is_the_wheel_alone() -> None:
    assert runtime.runtime_files([], [], "/opt/pimq", "/b/w.whl", "QQ==") == [
        {
            "path": "/opt/pimq/wheels/w.whl",
            "owner": "root",
            "group": "root",
            "mode": "0644",
            "content_b64": "QQ==",
        }
    ]


def test_runtime_filters_are_registered() -> None:
    assert runtime.FilterModule().filters() == {
        "pimq_job_module_paths": runtime.job_module_paths,
        "pimq_runtime_files": runtime.runtime_files,
    }


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: runtime.job_module_paths("primes.py", "/d"), "must be a list of strings, got str"),
        (lambda: runtime.job_module_paths(["a.py", 3], "/d"), "must be a list of strings, got 3"),
        (
            lambda: runtime.runtime_files(["a.py"], [], "/r", "w", "b"),
            "1 job module.* but 0 source",
        ),
        (lambda: runtime.runtime_files(["a.py"], None, "/r", "w", "b"), "sources must be a list"),
    ],
)
def test_runtime_filters_bad_input(call, error) -> None:
    with pytest.raises(AnsibleFilterError, match=error):
        call()


# --- the head's accounts --------------------------------------------------------------
STUDENTS = [  # as the pimq_roster('present') filter gives them
    {
        "name": "alice",
        "full_name": "Alice Liddell",
        "ssh_key": "ssh-ed25519 AAAA a@l",
        "state": "present",
    },
    {"name": "bob_2", "full_name": "bob_2", "ssh_key": "", "state": "present"},
]
PASSWORDS = {"alice": "Abc123xyz", "bob_2": "0123", "gone": "x"}


def test_head_accounts_with_their_config_files() -> None:
    accounts = head.head_accounts(STUDENTS, "head", "5672", PASSWORDS, "Ansible managed")
    assert accounts == [
        {
            "name": "alice",
            "comment": "Alice Liddell",
            "ssh_key": "ssh-ed25519 AAAA a@l",
            "config": "# pimq client configuration of alice (Ansible managed).\n"
            "# Keep it private: it holds your broker password.\n"
            "host: head\n"
            "port: 5672\n"
            "vhost: alice\n"
            "user: alice\n"
            "password: Abc123xyz\n",
            "password": "",
        },
        {
            "name": "bob_2",
            "comment": "bob_2",
            "ssh_key": "",
            # A password of digits only is quoted: YAML would read 0123 as a number.
            "config": "# pimq client configuration of bob_2 (Ansible managed).\n"
            "# Keep it private: it holds your broker password.\n"
            "host: head\n"
            "port: 5672\n"
            "vhost: bob_2\n"
            "user: bob_2\n"
            "password: '0123'\n",
            "password": "",
        },
    ]


def test_head_accounts_with_password_login_carry_the_handouts_password() -> None:
    accounts = head.head_accounts(STUDENTS, "head", 5671, PASSWORDS, "m", "", True)
    assert [(a["name"], a["password"]) for a in accounts] == [
        ("alice", "Abc123xyz"),
        ("bob_2", "0123"),
    ]


def test_head_accounts_of_no_student_is_empty() -> None:
    assert head.head_accounts([], "head", 5672, {}, "Ansible managed") == []


def test_head_filters_are_registered() -> None:
    assert head.FilterModule().filters() == {
        "pimq_head_accounts": head.head_accounts,
        "pimq_head_tree": head.head_tree,
    }


def test_head_tree_lists_every_text_file_under_its_dest_and_leaves_caches_out(tmp_path) -> None:
    src = tmp_path / "examples"
    (src / "celery" / "__pycache__").mkdir(parents=True)
    (src / "a.py").write_text("print(1)\n")
    (src / "celery" / "tasks.py").write_text("add = 1\n")
    (src / "celery" / "__pycache__" / "tasks.cpython-311.pyc").write_bytes(b"\x00")
    (src / "old.pyc").write_bytes(b"\x00")
    tree = head.head_tree([{"src": str(src), "dest": "/opt/pimq/examples/"}])
    root = {"owner": "root", "group": "root"}
    assert tree["folders"] == [
        {"path": "/opt/pimq/examples", "mode": "0755", **root},
        {"path": "/opt/pimq/examples/celery", "mode": "0755", **root},
    ]
    assert tree["files"] == [
        {"path": "/opt/pimq/examples/a.py", "content": "print(1)\n", "mode": "0644", **root},
        {
            "path": "/opt/pimq/examples/celery/tasks.py",
            "content": "add = 1\n",
            "mode": "0644",
            **root,
        },
    ]


def test_head_tree_refuses_a_missing_folder_and_a_binary_file(tmp_path) -> None:
    with pytest.raises(AnsibleFilterError, match="is not a folder"):
        head.head_tree([{"src": str(tmp_path / "none"), "dest": "/x"}])
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(AnsibleFilterError, match=r"blob\.bin is not text"):
        head.head_tree([{"src": str(tmp_path), "dest": "/x"}])


@pytest.mark.parametrize(
    ("students", "port", "passwords", "error"),
    [
        ({"name": "alice"}, 5672, PASSWORDS, "expects the list of normalised students, got dict"),
        ([{"name": "alice"}], 5672, PASSWORDS, "lacks full_name, ssh_key .*pimq_roster filter"),
        (STUDENTS, "amqp", PASSWORDS, "port 'amqp' is not a number"),
        (STUDENTS, 5672, {"alice": "x"}, "no password for student bob_2"),
    ],
)
def test_head_accounts_bad_input(students, port, passwords, error) -> None:
    with pytest.raises(AnsibleFilterError, match=error):
        head.head_accounts(students, "head", port, passwords, "Ansible managed")


def test_head_accounts_with_the_room_ca_use_tls() -> None:
    accounts = head.head_accounts(
        STUDENTS[:1], "head", 5671, PASSWORDS, "Ansible managed", "/etc/pimq/ca.crt"
    )
    assert accounts[0]["config"] == (
        "# pimq client configuration of alice (Ansible managed).\n"
        "# Keep it private: it holds your broker password.\n"
        "host: head\n"
        "port: 5671\n"
        "ca: /etc/pimq/ca.crt\n"
        "vhost: alice\n"
        "user: alice\n"
        "password: Abc123xyz\n"
    )
    with pytest.raises(AnsibleFilterError, match="ca 5 is not a path"):
        head.head_accounts(STUDENTS, "head", 5671, PASSWORDS, "m", 5)


# --- broker certificates ----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "hostvars", "sans"),
    [
        ("head", {"ansible_host": "10.0.0.1"}, ["DNS:head", "IP:10.0.0.1"]),
        (
            "pi-b",
            {"pimq_address": "192.168.1.5", "ansible_host": "pi-b.local"},
            ["DNS:pi-b", "IP:192.168.1.5", "DNS:pi-b.local"],
        ),
        ("pi-c", {"ansible_host": "fe80::1"}, ["DNS:pi-c", "IP:fe80::1"]),
        ("pi-d", {"ansible_host": "pi-d", "pimq_address": ""}, ["DNS:pi-d"]),
        ("pi-e", {"ansible_facts": {"default_ipv4": {"address": "10.0.0.7"}}}, ["DNS:pi-e"]),
    ],
)
def test_tls_sans_name_then_inventory_addresses(name, hostvars, sans) -> None:
    assert tls.tls_sans(name, hostvars) == sans


def test_tls_sans_is_registered_and_checks_input() -> None:
    assert tls.FilterModule().filters() == {"pimq_tls_sans": tls.tls_sans}
    with pytest.raises(AnsibleFilterError, match="expects a host name"):
        tls.tls_sans("", {})
    with pytest.raises(AnsibleFilterError, match="expects the host's variables, got list"):
        tls.tls_sans("pi", [])


monitor = filter_plugin("pimq_monitor", "pimq_monitor")


def test_pimq_bcrypt_is_stable_checks_and_refuses_bad_salts():
    import bcrypt

    salt = "AbCdEfGhIjKlMnOpQrStU"
    first = monitor.FilterModule().filters()["pimq_bcrypt"]("s3cret-pw", salt, 4)
    assert first == monitor.bcrypt_hash("s3cret-pw", salt, 4)  # a second run: the same hash
    assert first.startswith("$2b$04$" + salt)
    assert bcrypt.checkpw(b"s3cret-pw", first.encode())
    assert not bcrypt.checkpw(b"other", first.encode())
    assert monitor.bcrypt_hash("s3cret-pw", "UtSrQpOnMlKjIhGfEdCbA", 4) != first
    for bad in ("short", "AbCdEfGhIjKlMnOpQrSt!", ""):
        with pytest.raises(ValueError):
            monitor.bcrypt_hash("pw", bad, 4)
    with pytest.raises(ValueError):
        monitor.bcrypt_hash("pw", salt, 3)
