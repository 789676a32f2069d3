"""Build a wheel of the Python project in the current directory into argv[1].

Calls the project's PEP 517 build backend (``[build-system] build-backend`` of
pyproject.toml, e.g. hatchling) in this interpreter, without build isolation,
dependencies or an index: what ``pip wheel --no-deps --no-build-isolation
--no-index`` does, without pip's start-up (a second or so on a Pi-sized
control machine; the backend alone takes a tenth of that).

Prints the wheel's file name and SHA-1, and writes the wheel base64-encoded
beside it (``<wheel>.b64``): the role hands it to pimq_files as text, so the
wheel travels in the same module run as the rest of the runtime's files.
"""

import base64
import hashlib
import importlib
import os
import sys
import tomllib


def main() -> None:
    out = os.path.abspath(sys.argv[1])
    with open("pyproject.toml", "rb") as f:
        build_system = tomllib.load(f).get("build-system", {})
    spec = build_system.get("build-backend", "setuptools.build_meta:__legacy__")
    for path in reversed(build_system.get("backend-path", [])):
        sys.path.insert(0, os.path.abspath(path))
    module, _, attr = spec.partition(":")
    backend = importlib.import_module(module)
    for part in filter(None, attr.split(".")):
        backend = getattr(backend, part)
    os.makedirs(out, exist_ok=True)
    name = backend.build_wheel(out)
    with open(os.path.join(out, name), "rb") as f:
        data = f.read()
    with open(os.path.join(out, name + ".b64"), "wb") as f:
        f.write(base64.b64encode(data) + b"\n")
    print(name, hashlib.sha1(data).hexdigest())


if __name__ == "__main__":
    main()
