"""The simulated classroom's local Debian mirror: where its Pis get packages.

The room's network has no route out (an internal Docker network), as many a
real classroom's has none, so the nodes install what the playbooks ask for
from here. The mirror holds, per release, the ``.deb`` files the node image
downloaded at build time (tests/harness/debs.py's list, with every dependency
and recommendation apt chose) as a flat apt repository: a ``Packages`` index
and a ``Release`` file naming its checksum, written here from each package's
own control fields (``dpkg-deb``). It is unsigned and served only inside the
room, so the nodes' apt source says ``[trusted=yes]``.

A container of the room (``<prefix>-mirror``, alias ``mirror``) serves the
directory read-only over HTTP; each node's only apt source is its release's
directory there. Stdlib only, as classroom.py.
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / ".classroom" / "mirror"
#: the mirror's name on the room's network
HOST = "mirror"
PORT = 80


class MirrorError(Exception):
    pass


def sources_line(release: str) -> str:
    """A node's only apt source: its release's directory on the room's mirror."""
    return f"deb [trusted=yes] http://{HOST}/{release} ./\n"


def _run(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise MirrorError(f"`{' '.join(args)}` failed: {out.stderr.strip()}")
    return out.stdout


def _digests(path: Path) -> dict[str, str]:
    sums = {"MD5sum": hashlib.md5(), "SHA256": hashlib.sha256()}
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in sums.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in sums.items()}


def write_index(directory: Path, release: str) -> int:
    """``Packages`` and ``Release`` for the ``.deb`` files in ``directory``; how many."""
    stanzas = []
    debs = sorted(directory.glob("*.deb"))
    for deb in debs:
        control = _run("dpkg-deb", "--field", str(deb)).rstrip("\n")
        sums = _digests(deb)
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\n"
            f"MD5sum: {sums['MD5sum']}\nSHA256: {sums['SHA256']}\n"
        )
    packages = directory / "Packages"
    packages.write_text("\n".join(stanzas))
    sums = _digests(packages)
    size = packages.stat().st_size
    (directory / "Release").write_text(
        f"Origin: pimq\nLabel: pimq classroom mirror\nSuite: {release}\n"
        f"Codename: {release}\nDate: {email.utils.formatdate(usegmt=True)}\n"
        f"MD5Sum:\n {sums['MD5sum']} {size} Packages\n"
        f"SHA256:\n {sums['SHA256']} {size} Packages\n"
    )
    return len(debs)


def build(release: str, image: str) -> Path:
    """The mirror of ``release`` from the node image ``image`` (cached: rebuilt
    only when the image changed); its directory."""
    image_id = _run("docker", "image", "inspect", "-f", "{{.Id}}", image).strip()
    directory = ROOT / release
    stamp = directory / ".image"
    if stamp.exists() and stamp.read_text() == image_id:
        return directory
    ROOT.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{release}-", dir=ROOT))
    container = _run("docker", "create", image).strip()
    try:
        _run("docker", "cp", f"{container}:/var/cache/apt/archives/.", str(fresh))
    finally:
        _run("docker", "rm", "-f", container)
    for leftover in fresh.iterdir():  # apt's lock and partial/: not packages
        if leftover.suffix != ".deb":
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    if write_index(fresh, release) == 0:
        shutil.rmtree(fresh)
        raise MirrorError(f"the {release} node image {image} holds no downloaded packages")
    fresh.chmod(0o755)
    (fresh / ".image").write_text(image_id)
    if directory.exists():
        shutil.rmtree(directory)
    fresh.replace(directory)
    return directory
