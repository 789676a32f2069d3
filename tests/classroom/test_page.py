"""The teacher's page on the provisioned classroom, in a real browser.

Debian's chromium (headless, driven by chromium-driver through selenium)
logs in to ``https://<head>:8443/`` as the admin while students run jobs:
every Pi of the room is listed, and a finished job (``pimq run``, ``pimq
experiment`` with its speedup) appears within a refresh, from the teacher's
record; with the room's Prometheus, a student running a job is listed
active and a worker Pi stopped mid-job shows as DOWN within a scrape and a
refresh (and up again once restarted: the room is left whole).
Screenshots go to ``artifacts/classroom/test_page/``.

As a student on the head: the page answers a redirect to its login (``/``)
or 401 (``/api/figures``), the student's own password is not a login, the
page's settings and secrets are not theirs to read, and the teacher's record
takes their job summaries under their own name only and gives them nothing
back. The service runs as its own unprivileged user, its secrets readable by it alone.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from support import jobs, journals, nodes

pytestmark = [pytest.mark.classroom, pytest.mark.timeout(900)]

PORT = 8443
STUDENT = "alice"
OTHER = "bob"
SHOTS = journals.ARTIFACTS / "classroom" / "test_page"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REFRESH = 10  # pimq_page_refresh_seconds


@pytest.fixture(scope="module")
def url(room: nodes.Room, converged) -> str:
    return f"https://{room.ips[room.head]}:{PORT}"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, data: dict | None = None) -> tuple[int, dict[str, str], str]:
    """One request verified against the room CA (its IP is in the page's
    certificate); redirects are not followed."""
    ctx = ssl.create_default_context(cafile=str(nodes.room_ca()))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with opener.open(urllib.request.Request(url, data=body), timeout=20) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_page_is_https_from_the_room_ca_and_closed_without_login(url: str) -> None:
    status, _, body = fetch(url + "/healthz")
    assert (status, body) == (200, "ok\n")
    status, headers, _ = fetch(url + "/")
    assert status == 303 and headers["Location"].endswith("/login")
    assert fetch(url + "/api/figures")[0] == 401
    status, headers, body = fetch(url + "/login")
    assert status == 200 and 'name="password"' in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # plain HTTP is not served
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(url.replace("https", "http") + "/healthz", timeout=10).read()


def test_admin_logs_in_and_a_student_password_does_not(url: str, creds: nodes.Credentials) -> None:
    status, headers, _ = fetch(url + "/login", {"name": "pimq-admin", "password": creds.admin})
    assert status == 303, status
    cookie = headers["Set-Cookie"]
    assert "pimq_page=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    for name in (STUDENT, "pimq-admin"):
        status, headers, body = fetch(
            url + "/login", {"name": name, "password": creds.students[STUDENT]}
        )
        assert status == 401 and "Wrong name or password" in body
        assert "pimq_page=" not in headers.get("Set-Cookie", "")


# As the student, on the head: the page, its files and the record.
AS_STUDENT = r"""
import json, os, ssl, sys, urllib.error, urllib.parse, urllib.request, yaml, pika
cfg = yaml.safe_load(open(os.path.expanduser("~/.config/pimq/config.yaml")))
ctx = ssl.create_default_context(cafile=cfg["ca"])
base = "https://%s:%s" % (cfg["host"], sys.argv[1])
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
def get(path, data=None):
    body = urllib.parse.urlencode(data).encode() if data else None
    try:
        with opener.open(urllib.request.Request(base + path, data=body), timeout=20) as r:
            return r.status, r.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Set-Cookie", "")
out = {"index": get("/")[0], "api": get("/api/figures")[0]}
out["login"] = get("/login", {"name": cfg["user"], "password": cfg["password"]})
out["login_admin"] = get("/login", {"name": "pimq-admin", "password": cfg["password"]})
out["files"] = {}
for path in ("/etc/pimq/page/password", "/etc/pimq/page/page.key", "/etc/pimq/page/logins",
             "/var/lib/pimq-page/records.json"):
    try:
        open(path).read(); out["files"][path] = "read"
    except OSError as e:
        out["files"][path] = type(e).__name__
rec = yaml.safe_load(open("/etc/pimq/record.yaml"))
def connect():
    return pika.BlockingConnection(pika.ConnectionParameters(
        rec["host"], rec["port"], rec["vhost"],
        pika.PlainCredentials(cfg["user"], cfg["password"]), connection_attempts=1,
        ssl_options=pika.SSLOptions(ctx, rec["host"])))
def attempt(what, fn):
    conn = connect()
    ch = conn.channel()
    ch.confirm_delivery()
    try:
        fn(ch); out[what] = "ok"
    except Exception as e:
        out[what] = type(e).__name__ + ": " + str(e)[:200]
    try:
        conn.close()
    except Exception:
        pass
doc = {"job": "forged", "student": sys.argv[2], "kind": "noop", "pis": [], "shards": 1,
       "wall_seconds": 1.0, "speedup": None, "outcome": "done", "finished": 1.0}
body = json.dumps(doc).encode()
attempt("forge", lambda ch: ch.basic_publish(rec["exchange"], "", body,
        pika.BasicProperties(user_id=sys.argv[2])))
attempt("read", lambda ch: ch.basic_get(rec["exchange"]))
attempt("declare", lambda ch: ch.queue_declare("mine"))
attempt("default", lambda ch: ch.basic_publish("", rec["exchange"], body,
        pika.BasicProperties(user_id=cfg["user"])))
print(json.dumps(out))
"""


def test_a_student_on_the_head_is_refused(room: nodes.Room, converged) -> None:
    proc = nodes.run_python_as(room, STUDENT, AS_STUDENT, str(PORT), OTHER)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["index"] == 303 and out["api"] == 401
    for key in ("login", "login_admin"):
        status, cookie = out[key]
        assert status == 401 and "pimq_page=" not in cookie, out
    assert set(out["files"].values()) == {"PermissionError"}, out["files"]
    # the record: their own name only (RabbitMQ checks user_id), nothing to read or make
    assert "PRECONDITION_FAILED" in out["forge"] or "406" in out["forge"], out["forge"]
    assert "ACCESS_REFUSED" in out["read"] or "403" in out["read"], out["read"]
    assert "ACCESS_REFUSED" in out["declare"] or "403" in out["declare"], out["declare"]
    assert "ACCESS_REFUSED" in out["default"] or "403" in out["default"], out["default"]


def test_the_service_is_unprivileged_with_its_secrets_as_credentials(
    room: nodes.Room, converged, creds: nodes.Credentials
) -> None:
    props = nodes.on_node(
        room.head,
        "systemctl show pimq-page.service -p User -p NoNewPrivileges -p ProtectSystem"
        " -p CapabilityBoundingSet -p MainPID -p ActiveState",
    ).stdout
    shown = dict(line.split("=", 1) for line in props.splitlines() if "=" in line)
    assert shown["ActiveState"] == "active"
    assert shown["User"] == "pimq-page" and shown["NoNewPrivileges"] == "yes"
    assert shown["ProtectSystem"] == "strict" and shown["CapabilityBoundingSet"] == ""
    pid = shown["MainPID"]
    status = nodes.on_node(room.head, f"cat /proc/{pid}/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    page_uid = nodes.on_node(room.head, "id -u pimq-page").stdout.strip()
    assert set(uids) == {page_uid} and page_uid != "0", uids
    assert "CapEff:\t0000000000000000" in status
    cmdline = nodes.on_node(room.head, f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    environ = nodes.on_node(room.head, f"tr '\\0' '\\n' < /proc/{pid}/environ").stdout
    page_password = (nodes.INVENTORY / "credentials" / "page.txt").read_text().strip()
    for secret in (creds.admin, page_password):
        assert secret not in cmdline and secret not in environ
    modes = nodes.on_node(
        room.head, "stat -c '%a %U %n' /etc/pimq/page /etc/pimq/page/* /etc/pimq/page.yaml"
    ).stdout.splitlines()
    for line in modes:
        mode, owner, path = line.split()
        if path == "/etc/pimq/page.yaml":
            assert mode == "644"
            text = nodes.on_node(room.head, "cat /etc/pimq/page.yaml").stdout
            assert page_password not in text and creds.admin not in text
        else:
            assert owner == "root" and mode in ("750", "640"), line


# --- the browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, through Debian's chromium-driver. It does
    not know the room CA (importing it would need an NSS database): the
    certificate is checked by the tests above, against the room CA."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert Path(path).exists(), f"{path} missing: make setup installs chromium, chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # as root in CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def shot(driver, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_page(driver, predicate, timeout: float, what: str):
    """Wait for ``predicate(driver)`` while the page refreshes by itself (no
    reload from here: the page's own refresh is what is tested)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = predicate(driver)
        except Exception:  # the page was being replaced by its refresh
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            shot(driver, "timeout")
            raise AssertionError(f"the page did not show {what} within {timeout:.0f} s")
        time.sleep(0.5)


def login(driver, url: str, creds: nodes.Credentials) -> None:
    """Log in as the admin through the form (if not logged in yet)."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/")
    if driver.current_url.endswith("/login"):
        driver.find_element(By.ID, "name").send_keys("pimq-admin")
        driver.find_element(By.ID, "password").send_keys(creds.admin)
        driver.find_element(By.ID, "login").click()
    wait_page(driver, lambda d: d.find_elements(By.ID, "pis"), 20, "the room after the login")


def test_the_teacher_sees_the_room_and_the_class_jobs(
    room: nodes.Room, url: str, creds: nodes.Credentials, browser
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url + "/")
    assert browser.current_url.endswith("/login")
    browser.find_element(By.ID, "name").send_keys(STUDENT)
    browser.find_element(By.ID, "password").send_keys(creds.students[STUDENT])
    browser.find_element(By.ID, "login").click()
    assert "Wrong name or password" in browser.find_element(By.ID, "login-error").text
    shot(browser, "login-refused")

    login(browser, url, creds)
    shown = {
        e.get_attribute("id").removeprefix("pi-"): e.get_attribute("data-state")
        for e in browser.find_elements(By.CSS_SELECTOR, "tr.pi")
    }
    assert set(room.nodes) <= set(shown), shown
    shot(browser, "room")

    # Jobs as students: a word count, a failing one, an experiment
    first = jobs.start(room, STUDENT, "primes", "3000000", "--shards", "12")
    second = jobs.start(room, OTHER, "pi", "--samples", "2000000", "--shards", "6")
    try:
        for job in (first, second):
            job.wait(timeout=300)
            assert job.rc == 0, job.err
    finally:
        for job in (first, second):
            if job.proc.poll() is None:
                job.proc.kill()
    job_id = first.doc["job"]

    def job_row(d):
        rows = d.find_elements(By.ID, f"job-{job_id}")
        return rows[0].text if rows else None

    text = wait_page(browser, job_row, 2 * REFRESH + 5, f"alice's job {job_id}")
    assert STUDENT in text and "primes" in text and "done" in text, text
    for pi in first.doc["workers"]:
        assert pi in text, text
    assert f"{first.doc['shards']}" in text
    other_id = second.doc["job"]
    assert browser.find_elements(By.ID, f"job-{other_id}"), "bob's job is not listed"
    shot(browser, "jobs")

    experiment = nodes.ssh(
        room,
        STUDENT,
        "pimq experiment primes 400000 --upto 2 --repeats 1 --json --png experiment-test.png",
        timeout=300,
    )
    doc = json.loads(experiment.stdout.strip().splitlines()[-1])
    speedup = doc["rows"][-1]["speedup"]

    def experiment_row(d):
        rows = d.find_elements(By.ID, f"job-{doc['job']}")
        return rows[0].text if rows else None

    text = wait_page(browser, experiment_row, 2 * REFRESH + 5, "the experiment with its speedup")
    assert STUDENT in text and "primes" in text and text.endswith("done"), text
    assert f"{speedup:.2f}x" in text, (text, speedup)
    shot(browser, "experiment")
    # the page's own refresh (no reload from here) keeps it current
    first_update = browser.find_element(By.ID, "updated").text
    wait_page(
        browser,
        lambda d: d.find_element(By.ID, "updated").text != first_update,
        REFRESH + 10,
        "a refresh by itself",
    )
    shot(browser, "teacher-page")  # docs/teacher-page.png is one of these


# --- with the room's Prometheus (roles/pimq_monitor) ---------------------------------

SCRAPE = 10 + 5  # pimq_monitor's scrape interval + timeout: when Prometheus sees it


def row_text(driver, row_id: str) -> str | None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.ID, row_id)
    return rows[0].text if rows else None


def state_of(driver, pi: str) -> str | None:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.ID, f"pi-{pi}")
    return rows[0].get_attribute("data-state") if rows else None


def test_the_page_shows_active_students_and_a_pi_killed_mid_job(
    room: nodes.Room, url: str, creds: nodes.Credentials, browser
) -> None:
    """A long job as a student: the page lists them active (jobs running,
    shards queued, share of the fleet) and every Pi up with its figures;
    then a worker Pi is stopped mid-job and the page shows it DOWN within
    Prometheus' scrape and one refresh of its own. The Pi is started again
    at the end and the page shows it up: the room is left whole."""
    from selenium.webdriver.common.by import By

    login(browser, url, creds)
    wait_page(
        browser,
        lambda d: all(state_of(d, n) == "up" for n in room.nodes),
        SCRAPE + 2 * REFRESH,
        "every Pi up",
    )
    # a worker's figures from its exporter: load, shards/s, processes busy/total
    # (the temperature is "no data" in a container: no thermal zone)
    row = browser.find_element(By.ID, f"pi-{room.workers[0]}").text
    assert re.fullmatch(rf"{room.workers[0]} up [\d.]+ (no data|\d+ °C) [\d.]+ \d+/\d+", row), row
    job = jobs.start(
        room, STUDENT, "sleep", "xxx", "--per-char", "1", "--shards", "40", "--timeout", "600"
    )
    victim = room.workers[-1]
    try:

        def running(d):
            # (a row of alice's may be there already: shards run in the last minute)
            text = row_text(d, f"student-{STUDENT}")
            return text if text and int(text.split()[1]) >= 1 else None

        text = wait_page(browser, running, SCRAPE + 2 * REFRESH, f"{STUDENT} running a job")
        cells = text.split()
        assert cells[0] == STUDENT and int(cells[1]) >= 1, text
        assert cells[-1] == "%" and 0 <= int(cells[-2]) <= 100, text
        shot(browser, "active-student")
        jobs.docker("stop", "-t", "1", nodes.container(victim))
        stopped = time.monotonic()
        wait_page(
            browser, lambda d: state_of(d, victim) == "down", SCRAPE + 2 * REFRESH, f"{victim} DOWN"
        )
        took = time.monotonic() - stopped
        shot(browser, "pi-down")
        assert took <= SCRAPE + 2 * REFRESH, took
        assert all(state_of(browser, n) == "up" for n in room.nodes if n != victim)
        job.wait(timeout=600)
        assert job.rc == 0, job.err  # nothing lost: the other Pi did the rest
        assert job.doc["result"] == 40 * 3
    finally:
        jobs.docker("start", nodes.container(victim))  # the room left whole
        if job.proc.poll() is None:
            job.proc.kill()
    jobs.wait_node_back(victim)
    wait_page(
        browser, lambda d: state_of(d, victim) == "up", SCRAPE + 3 * REFRESH, f"{victim} up again"
    )
    shot(browser, "pi-back")
