"""A throw-away certificate authority for tests (the ``openssl`` command).

:func:`make_ca` makes a CA like the room's (EC P-256 key, self-signed, CA
constraint); :meth:`TestCA.issue` a broker certificate with the given host
names and addresses as SAN, signed by that CA. Nothing here is reused outside
the test that made it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {out.stderr}")


def _key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )  # fmt: skip
    path.chmod(0o600)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TestCA:
    cert: Path
    key: Path

    __test__ = False  # not a pytest test class

    def issue(self, folder: Path, name: str, sans: tuple[str, ...]) -> Issued:
        """A server certificate for ``sans`` (names and addresses), signed by this CA."""
        folder.mkdir(parents=True, exist_ok=True)
        key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
        ext = folder / f"{name}.ext"
        entries = []
        for san in sans:
            try:
                ipaddress.ip_address(san)
                entries.append(f"IP:{san}")
            except ValueError:
                entries.append(f"DNS:{san}")
        ext.write_text(
            f"subjectAltName={','.join(entries)}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _key(key)
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return Issued(cert, key)


def make_ca(folder: Path, name: str = "pimq test CA") -> TestCA:
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "ca.key", folder / "ca.crt"
    _key(key)
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={name}", "-days", "2",
        "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(cert),
    )  # fmt: skip
    return TestCA(cert, key)
