"""Celery on your own vhost (docs/lab/07-celery.md): the broker-survey hand-out's tasks.

    python3 -m celery -A tasks worker --concurrency 2    # in one window (or tmux pane)
    python3 -c 'from tasks import add; print(add.delay(4, 4).get(timeout=30))'

pimq.celery_config() reads your ~/.config/pimq/config.yaml: your vhost, user and
password, TLS checked against the room's CA, results back over the broker (rpc://).
"""

from __future__ import annotations

from celery import Celery

import pimq

app = Celery("tasks")
app.conf.update(pimq.celery_config())


@app.task
def add(x: int, y: int) -> int:
    return x + y
