"""tests/harness/debs.py, the one list of Debian packages the roles install (the
node image downloads it, the room's mirror serves it), and the mirror's index."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from support.plugins import REPO, load

debs = load(REPO / "tests/harness/debs.py", "debs_under_test")
mirror = load(REPO / "tests/harness/mirror.py", "mirror_under_test")
WANTED = re.compile(r"pimq_packages_wanted:\s*\"\{\{\s*(\w+)\s*\}\}\"")


def test_every_package_list_the_roles_install_from_is_in_the_one_list() -> None:
    lists = debs.package_lists()
    used = {m for f in REPO.glob("roles/*/tasks/*.yml") for m in WANTED.findall(f.read_text())}
    assert used  # the pattern still finds the roles' installs
    defaults: dict[str, object] = {}
    for f in REPO.glob("roles/*/defaults/main.yml"):
        defaults.update(yaml.safe_load(f.read_text()) or {})
    for name in used:
        if name in lists:
            continue
        # a derived list: every *_packages it names is one of the lists
        parts = set(re.findall(r"\w+_packages", str(defaults[name])))
        assert parts and parts <= set(lists), (name, parts - set(lists))
    assert set(debs.packages()) >= {"rabbitmq-server", "python3-pika", "systemd-timesyncd"}


def test_the_mirror_index_names_each_package_with_its_checksums(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        "Package: pimq-probe\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: pimq <pimq@localhost>\nDescription: probe\n two lines\n"
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(
        ["dpkg-deb", "--build", str(root), str(repo / "pimq-probe_1.0_all.deb")],
        check=True,
        capture_output=True,
    )
    assert mirror.write_index(repo, "bookworm") == 1
    packages = (repo / "Packages").read_text()
    assert "Package: pimq-probe\n" in packages and "Description: probe\n two lines\n" in packages
    assert "Filename: ./pimq-probe_1.0_all.deb\n" in packages
    deb = repo / "pimq-probe_1.0_all.deb"
    assert f"Size: {deb.stat().st_size}\n" in packages
    sha = subprocess.run(["sha256sum", str(deb)], capture_output=True, text=True).stdout.split()[0]
    assert f"SHA256: {sha}\n" in packages
    release = (repo / "Release").read_text()
    sha = subprocess.run(
        ["sha256sum", str(repo / "Packages")], capture_output=True, text=True
    ).stdout.split()[0]
    assert f"SHA256:\n {sha} {len(packages.encode())} Packages\n" in release
