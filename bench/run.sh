#!/usr/bin/env bash
# make bench: prepare .venv-bench (idempotent) and run every benchmark.
# Arguments go to bench/run.py (--help lists them; --with-classroom adds the
# provisioning timings, which take minutes, need Docker and run `make clean`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-bench
REQ=requirements-bench.txt
STAMP="$VENV/.requirements.sha256"
want=$(sha256sum "$REQ" | cut -d' ' -f1)

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c 'import pimq' 2>/dev/null; then
    echo "bench: the project venv .venv with pimq is missing: run 'make setup' first" >&2
    exit 2
fi
if ! command -v rabbitmq-server >/dev/null && [[ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
    echo "bench: rabbitmq-server is not installed: run 'make setup' first" >&2
    exit 2
fi
if [[ ! -x "$VENV/bin/python" || "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
    echo "bench: preparing $VENV from $REQ" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
    echo "$want" > "$STAMP"
fi
# bench/ imports the shared test support (tests/support) as `support.*`.
export PYTHONPATH="$PWD/tests${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" bench/run.py "$@"
