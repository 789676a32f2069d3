# pimq — the commands people type. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
BIN       := $(VENV)/bin
PY        := $(BIN)/python
ANSIBLE_PLAYBOOK := $(BIN)/ansible-playbook
WORKERS   ?= 3
INVENTORY ?=
LOCAL     ?= inventory/local
PYTEST    := $(BIN)/pytest
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(CURDIR)/$(BIN):$(PATH)
# One id per make invocation (or per make test): every suite of it shares the
# simulated room's provisioning record (tests/support/provision.py). Set it
# yourself to reuse a converge across invocations of the inner loop.
ifndef PIMQ_RUN
PIMQ_RUN := $(shell date +%Y%m%dT%H%M%S)-$(shell echo $$PPID)
endif
export PIMQ_RUN
# What make test runs; make test-all adds the heavy matrix (tests/harness/suites.py).
# Groups run one after the other; in a group, lanes joined by + run at the same
# time, a lane's suites (joined by ,) one after the other. The two cores are the
# limit, so the lanes are laid out for them: first the room's converge beside
# lint, the unit tests and the integration suite's three legs (pika 1.2, the
# bookworm Pis', and the newest pika on bookworm's RabbitMQ 3.10; pika 1.3 on
# trixie's RabbitMQ 4.0); then the harness, classroom and chaos suites on that
# room, one after the other, while Molecule converges its own one-Pi room beside
# them (the classroom suite waits on its nodes much of the time). The room is the
# mixed one (tests/harness/classroom.py: its last Pi runs trixie).
TEST_SUITES := lint,unit+integration-newest+integration-pika12+integration-rabbitmq4+converge test-harness,test-classroom,chaos-ci+molecule
# The heavy matrix, after make test's suites: the full chaos suite on make test's
# room, Molecule's one-Pi room on trixie, then the classroom suite again on an
# all-trixie room (which replaces the mixed one).
HEAVY_SUITES := chaos+molecule-trixie test-trixie-room

.PHONY: help setup lint unit integration integration-newest integration-pika12 integration-rabbitmq4 classroom provision converge demo known-hosts bootstrap deploy check status \
        stop-job purge-dead reset-password \
        test test-all test-harness test-classroom test-trixie-room molecule molecule-trixie chaos chaos-ci bench clean

help: ## this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## prepare this machine: Docker engine, debootstrap, RabbitMQ, .venv (idempotent)
	@tests/harness/setup-host.sh

lint: setup ## ansible-lint (production), yamllint, ruff
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production playbooks roles
	$(BIN)/ruff check worker tests bench roles tools examples
	$(BIN)/ruff format --check worker tests bench roles tools examples

unit: setup ## pure-logic tests (seconds)
	$(PYTEST) tests/unit

integration: integration-newest integration-pika12 ## the runtime against a real RabbitMQ, with the newest pika, then Debian's pika 1.2

integration-newest: setup ## the integration suite with the newest pika (.venv)
	$(PYTEST) tests/integration

integration-pika12: setup ## the integration suite with Debian bookworm's python3 and pika 1.2, as on the Pis (.venv-deb)
	.venv-deb/bin/python -m pytest tests/integration

integration-rabbitmq4: setup ## the same tests against Debian trixie's RabbitMQ 4.0 (a local container, every deprecated feature denied) with trixie's pika 1.3
	@# the image first, outside any test's time limit (a first build waits its turn behind the room's)
	@tests/harness/image.sh --release trixie --broker >/dev/null
	PIMQ_RABBITMQ=trixie .venv-pika13/bin/python -m pytest tests/integration

classroom: setup ## bring up the simulated classroom (head + WORKERS Pis) and leave it running [LINK=gigabit|100mbit|wifi] [RELEASES=bookworm,trixie,..: each node's Debian, head first, the rest bookworm; default: the last Pi trixie, the rest bookworm]
	@$(PY) tests/harness/classroom.py up --workers $(WORKERS) --inventory $(LOCAL) --link "$(LINK)" $(if $(RELEASES),--releases $(RELEASES))

provision: classroom ## run playbooks/site.yml on the simulated classroom
	$(ANSIBLE_PLAYBOOK) -i $(LOCAL) playbooks/site.yml

converge: classroom ## converge site.yml on the simulated room for this run (PIMQ_RUN) as the classroom suites do first, and record it for them
	PYTHONPATH=tests $(PY) -m support.provision

demo: provision ## the simulated classroom, provisioned, and a real job run as a student
	@PIMQ_INVENTORY=$(LOCAL) tests/harness/demo.sh

known-hosts: setup ## record a room's SSH host keys once (fingerprints shown, confirmed): make known-hosts INVENTORY=inventory/<room> [YES=1] [FROM=file] [REPLACE=host]
	@test -n "$(INVENTORY)" || { echo "usage: make known-hosts INVENTORY=inventory/<room> [YES=1] [FROM=known_hosts file] [REPLACE=host]"; exit 2; }
	$(PY) tools/known_hosts.py $(INVENTORY) $(if $(YES),--yes) $(if $(FROM),--from $(FROM)) $(foreach h,$(REPLACE),--replace $(h))

bootstrap: setup ## Pis fresh from the imager (user + password only): record host keys, install your key, password login off: make bootstrap INVENTORY=inventory/<room> [YES=1] [PASSWORD_FILE=file] [LIMIT=host,..]
	@test -n "$(INVENTORY)" || { echo "usage: make bootstrap INVENTORY=inventory/<room> [YES=1] [PASSWORD_FILE=file] [LIMIT=host,..]"; exit 2; }
	$(PY) tools/bootstrap.py $(INVENTORY) $(if $(YES),--yes) $(if $(PASSWORD_FILE),--password-file $(PASSWORD_FILE)) $(if $(LIMIT),--limit $(LIMIT))

deploy: setup ## provision a real classroom: make deploy INVENTORY=inventory/<room> [ANSIBLE_ARGS=...]
	@test -n "$(INVENTORY)" || { echo "usage: make deploy INVENTORY=inventory/<room> (copy inventory/example to start)"; exit 2; }
	@test -f "$(INVENTORY)/hosts.yml" || { echo "no $(INVENTORY)/hosts.yml: copy inventory/example to $(INVENTORY) and describe your room"; exit 2; }
	$(ANSIBLE_PLAYBOOK) -i $(INVENTORY) playbooks/site.yml $(ANSIBLE_ARGS)

check: setup ## dry run of site.yml: make check INVENTORY=inventory/<room> (default: the simulated one)
	$(ANSIBLE_PLAYBOOK) -i $(or $(INVENTORY),$(LOCAL)) playbooks/site.yml --check --diff $(ANSIBLE_ARGS)

status: setup ## broker, workers and queue depths of a room (default: the simulated one)
	$(ANSIBLE_PLAYBOOK) -i $(or $(INVENTORY),$(LOCAL)) playbooks/status.yml

# The teacher's tools (playbooks/teacher.yml). Each takes INVENTORY (default:
# the simulated room) and ANSIBLE_ARGS (e.g. --check: say what, change nothing).
ROOM    = $(or $(INVENTORY),$(LOCAL))
TEACHER = $(ANSIBLE_PLAYBOOK) -i $(ROOM) playbooks/teacher.yml -e 'pimq_teacher_student=$(STUDENT)'

stop-job: setup ## stop a student's running job(s): make stop-job STUDENT=alice [JOB=id] [INVENTORY=inventory/<room>]
	@test -n "$(STUDENT)" || { echo "usage: make stop-job STUDENT=name [JOB=id] [INVENTORY=inventory/<room>]"; exit 2; }
	$(TEACHER) -e pimq_teacher_action=stop-job $(if $(JOB),-e 'pimq_teacher_job=$(JOB)') $(ANSIBLE_ARGS)

purge-dead: setup ## purge a student's pimq.dead on every broker, counting what went: make purge-dead STUDENT=alice
	@test -n "$(STUDENT)" || { echo "usage: make purge-dead STUDENT=name [INVENTORY=inventory/<room>]"; exit 2; }
	$(TEACHER) -e pimq_teacher_action=purge-dead $(ANSIBLE_ARGS)

reset-password: setup ## a new password for a student (brokers, head login, config file) and its handout line: make reset-password STUDENT=alice
	@test -n "$(STUDENT)" || { echo "usage: make reset-password STUDENT=name [INVENTORY=inventory/<room>]"; exit 2; }
	$(TEACHER) -e pimq_teacher_action=reset-password $(ANSIBLE_ARGS)
	@$(if $(findstring --check,$(ANSIBLE_ARGS)),true,$(PY) tools/handout_line.py $(ROOM) '$(STUDENT)')

test-harness: classroom ## the simulated classroom itself works
	$(PYTEST) tests/harness

test-classroom: classroom ## provisioning and end-to-end tests on the simulated classroom
	$(PYTEST) tests/classroom

test-trixie-room: setup ## the classroom suite on an all-trixie room: a trixie head and trixie Pis (RabbitMQ 4.0, pika 1.3); it replaces the room there was
	@$(MAKE) --no-print-directory test-classroom RELEASES=$(shell printf 'trixie,%.0s' $$(seq 0 $(WORKERS)))

molecule: setup ## converge site.yml on a fresh one-Pi room, idempotence, verify (Molecule) [RELEASE=trixie: the node's Debian, default bookworm]
	@tests/harness/image.sh --release $(or $(RELEASE),bookworm) >/dev/null
	cd tests && PIMQ_MOLECULE_RELEASE=$(or $(RELEASE),bookworm) $(CURDIR)/$(BIN)/molecule test

molecule-trixie: setup ## Molecule's one-Pi room on Debian trixie (RabbitMQ 4.0, pika 1.3): a trixie head (make test-all)
	@$(MAKE) --no-print-directory molecule RELEASE=trixie

chaos: classroom ## the full chaos + security suite on the simulated classroom; figures to tests/chaos/RESULTS.md
	CHAOS_RESULTS=tests/chaos/RESULTS.md $(PYTEST) tests/chaos

chaos-ci: classroom ## the chaos suite's CI subset: one job per fault, on the simulated classroom
	CHAOS_JOBS=1 $(PYTEST) tests/chaos

bench: setup ## every benchmark figure side by side (rebuilds the simulated classroom for the provisioning figure)
	bench/run.sh --with-classroom

test: setup ## everything CI checks, suite by suite, one simulated room; a table of times at the end
	@$(PY) tests/harness/suites.py --make "$(MAKE)" $(TEST_SUITES)

test-all: setup ## make test plus the heavy matrix: the full chaos suite and Molecule on trixie, then the classroom suite on an all-trixie room
	@$(PY) tests/harness/suites.py --make "$(MAKE)" $(TEST_SUITES) $(HEAVY_SUITES)

clean: ## remove the simulated classroom: containers, network, inventory, keys
	@if docker info >/dev/null 2>&1; then $(or $(wildcard $(PY)),python3) tests/harness/classroom.py down; fi
	rm -rf .pytest_cache build
