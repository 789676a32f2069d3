"""pimq: sharded jobs over RabbitMQ for a Raspberry Pi classroom.

For a student's own scripts: ``pimq.connect()`` returns a
``pika.BlockingConnection`` to their vhost from their config file, and
``pimq.parameters()`` the ``pika.ConnectionParameters`` behind it, and
``pimq.celery_config()`` the settings of a Celery app on it
(:mod:`pimq.client.connect`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "celery_config", "connect", "parameters"]


def connect(*args: Any, **kwargs: Any) -> Any:
    """A ``pika.BlockingConnection`` to your own vhost (see :func:`pimq.client.connect.connect`)."""
    from pimq.client.connect import connect as _connect

    return _connect(*args, **kwargs)


def parameters(*args: Any, **kwargs: Any) -> Any:
    """Your ``pika.ConnectionParameters`` (see :func:`pimq.client.connect.parameters`)."""
    from pimq.client.connect import parameters as _parameters

    return _parameters(*args, **kwargs)


def celery_config(*args: Any, **kwargs: Any) -> Any:
    """Your Celery app's settings (see :func:`pimq.client.connect.celery_config`)."""
    from pimq.client.connect import celery_config as _celery_config

    return _celery_config(*args, **kwargs)
