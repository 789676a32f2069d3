#!/usr/bin/python
"""Whose are the roster's names on a node: read only, for preflight."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pimq_account_owners
short_description: Tell, without changing anything, which roster names on a node pimq may use
description:
  - For every name in C(accounts), reads the node's users and groups and says
    whether pimq may use it (C(free) - no user, no group; C(pimq) - a member of
    C(marker_group), made by pimq; C(legacy) - made by an earlier pimq, which
    will be marked on this run) or not (C(refused) - a user or a group that
    pimq did not make, e.g. a teacher's own login or a system group such as
    C(sudo) or C(disk)).
  - Preflight runs it on every node before any host changes and stops the run
    naming every refused name; C(pimq_accounts) makes the same decision
    (module_utils/pimq_owners.py) before it changes or removes an account.
  - A custom module because the decision needs the marker group, the primary
    group and what is inside a private home, in one read-only call per node.
  - Never changes anything; supports check mode.
options:
  accounts:
    description:
      - The roster's names, each with C(name) and C(comment) (the full name pimq
        sets as GECOS; omitted or null for a student being removed - not checked).
    type: list
    elements: dict
    default: []
  creates_accounts:
    description:
      - Whether pimq makes student accounts on this node (the head); elsewhere
        any user or group of the name is refused.
    type: bool
    default: true
  marker_group:
    description: The system group every account pimq makes is a member of.
    type: str
    default: pimq-students
  home_base:
    description: Folder the homes are in.
    type: str
    default: /home
  config_path:
    description:
      - Path of the pimq config file, relative to the home (evidence of an
        earlier pimq's account).
    type: str
    default: .config/pimq/config.yaml
author: pimq
"""

EXAMPLES = r"""
- name: Whose are the roster's names on this node
  pimq_account_owners:
    accounts: [{name: alice, comment: Alice Liddell}]
    creates_accounts: "{{ inventory_hostname in groups['head'] }}"
  become: true
  register: owners
"""

RETURN = r"""
verdicts:
  description: Per name, C(kind) (free, pimq, legacy, refused) and C(reason).
  type: dict
  returned: always
refused:
  description: One line per name pimq may not use on this node, with the reason.
  type: list
  returned: always
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pimq_owners import REFUSED, inspect, login_defs, verdict
from ansible.module_utils.pimq_run import list_of


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            accounts=list_of(
                "dict",
                options=dict(
                    name=dict(type="str", required=True),
                    comment=dict(type="str"),
                ),
            ),
            creates_accounts=dict(type="bool", default=True),
            marker_group=dict(type="str", default="pimq-students"),
            home_base=dict(type="str", default="/home"),
            config_path=dict(type="str", default=".config/pimq/config.yaml"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    uid_min, gid_min = login_defs()
    verdicts: dict[str, dict[str, Any]] = {}
    for spec in p["accounts"]:
        found = inspect(spec["name"], p["marker_group"], p["config_path"])
        v = verdict(
            found, spec["comment"], p["home_base"], p["marker_group"],
            p["creates_accounts"], uid_min, gid_min,
        )  # fmt: skip
        verdicts[spec["name"]] = {"kind": v.kind, "reason": v.reason}
    refused = [f"{n}: {v['reason']}" for n, v in verdicts.items() if v["kind"] == REFUSED]
    module.exit_json(changed=False, verdicts=verdicts, refused=refused)


if __name__ == "__main__":
    main()
