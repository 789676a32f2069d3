"""The suite's broker is the release it was asked for, and a RabbitMQ 4 one
permits none of its deprecated features: the rest of the suite then proves
the runtime needs none of them."""

from __future__ import annotations

import os
import re
import subprocess

from support.private_broker import DENIED_FEATURES

#: PIMQ_RABBITMQ (a Debian release whose RabbitMQ runs in a container) -> its RabbitMQ series
CONTAINER_SERIES = {"trixie": "4.0."}


def host_rabbitmq_version() -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "rabbitmq-server"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split("-")[0]


def test_the_broker_is_the_release_asked_for(broker):
    release = os.environ.get("PIMQ_RABBITMQ", "")
    if release:
        assert broker.container, "PIMQ_RABBITMQ is set but the broker runs on the host"
        assert broker.version.startswith(CONTAINER_SERIES[release]), broker.version
    else:
        assert not broker.container
        assert broker.version == host_rabbitmq_version()


def permitted(broker) -> dict[str, bool]:
    """Every deprecated feature the running broker knows, and whether it is permitted."""
    out = broker.ctl(
        "eval",
        "[{N, rabbit_deprecated_features:is_permitted(N)}"
        " || N <- maps:keys(rabbit_deprecated_features:list(all))].",
    )
    return {name: value == "true" for name, value in re.findall(r"\{(\w+),(true|false)\}", out)}


def test_no_deprecated_feature_is_permitted(broker):
    major = int(broker.version.split(".")[0])
    if major < 4:  # 3.10 has no deprecated features to deny: the module is not there
        out = broker.ctl("eval", "code:which(rabbit_deprecated_features).")
        assert out.strip() == "non_existing", out
        return
    features = permitted(broker)
    assert sorted(features) == sorted(DENIED_FEATURES), "the broker's list differs from ours"
    assert [name for name, allowed in features.items() if allowed] == []
