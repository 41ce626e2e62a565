# knfleet — everything runs from a virtualenv (.venv) made here, so nothing depends on what is installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTERS ?= 1
# The local clusters' binaries (kube-apiserver, kubectl, …) are built once into a cache outside the repo.
BIN_DIR = $(shell $(PY) -m localcluster.build --print)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv build local-up local-down local-status test unit integration faults lint demo bench bench-fleet clean

help:
	@echo "make demo                 set up everything, bring up a local cluster, run knfleet on it"
	@echo "make test                 everything CI checks (lint, unit and integration tests)"
	@echo "make faults               the fault and bad-input suite (KNFLEET_FAULTS_LONG=1: 20 kills per scenario)"
	@echo "make local-up [CLUSTERS=n] start local clusters local-1..n (.local/clusters/<name>/kubeconfig)"
	@echo "make local-down           stop every local cluster (by PID)"
	@echo "make bench                measure knfleet on local clusters"
	@echo "make bench-fleet          one runner over 10, 100, 1,000 simulated clusters (record/replay)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

build: venv
	$(PY) -m localcluster.build

local-up: build
	PATH="$(BIN_DIR):$$PATH" $(PY) -m localcluster up --clusters $(CLUSTERS)

local-down: venv
	$(PY) -m localcluster down

local-status: venv
	$(PY) -m localcluster status

lint: venv
	$(VENV)/bin/ruff check .

unit: venv
	$(PY) -m pytest -m "not integration" -q

integration: build
	PATH="$(BIN_DIR):$$PATH" $(PY) -m pytest -m integration -q

faults: build
	KNFLEET_FAULTS=1 PATH="$(BIN_DIR):$$PATH" $(PY) -m pytest -m faults -q -rs -s

test: lint build
	PATH="$(BIN_DIR):$$PATH" $(PY) -m pytest -q -rs --durations=25

demo: build
	PATH="$(BIN_DIR):$$PATH" $(PY) -m localcluster.demo

bench: build
	$(PY) -m pip install -q -e '.[dev,bench]'
	PATH="$(BIN_DIR):$$PATH" $(PY) -m localcluster.bench

bench-fleet: build
	PATH="$(BIN_DIR):$$PATH" $(PY) -m localcluster.fleetbench

clean: local-down
	rm -rf .local
