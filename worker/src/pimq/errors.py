"""Errors a user can cause, each with its exit code.

Exit codes of the ``pimq`` command:

=====  ==========================================================
0      success
1      the job failed (a shard raised on every attempt, or was dead-lettered)
2      usage or input error (bad option, bad regex, missing file, unknown
       job kind, bad or unsafe config file)
3      broker unreachable, wrong credentials, or no access to the vhost
4      ``--timeout`` elapsed before every shard came back, or the broker
       refused a publish (a queue at the room's cap) for longer than the
       command waits for room (``--queue-wait``)
5      the teacher stopped the job (``make stop-job``); its shards were dropped
130    interrupted (Ctrl-C); the job was cancelled
=====  ==========================================================
"""

from __future__ import annotations


class PimqError(Exception):
    """An error with a one-line message for the user and an exit code."""

    exit_code = 2


class UsageError(PimqError):
    exit_code = 2


class ConfigError(PimqError):
    exit_code = 2


class BrokerError(PimqError):
    exit_code = 3


class JobFailed(PimqError):
    exit_code = 1


class JobTimeout(PimqError):
    exit_code = 4


class QueueFull(PimqError):
    """The broker refused publishes (a queue at its cap) for longer than we wait."""

    exit_code = 4


class JobStopped(PimqError):
    """The teacher stopped the job (a stop message on its result queue)."""

    exit_code = 5


class Interrupted(PimqError):
    exit_code = 130
