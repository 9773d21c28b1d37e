# AI Workbench. `make run` starts the app; `make test` runs every test. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run worker test lint bench system-deps clean-data

# Runtime pins only: what `make run` needs.
$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

# Test and lint tools on top (pytest, hypothesis, playwright, the OIDC mock, ruff, mypy, import-linter).
$(DEV_STAMP): $(STAMP) requirements-dev.txt
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(DEV_STAMP)

run: $(STAMP)
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true

# A queue worker process (server mode: WORKBENCH_QUEUE_URL=redis://… here, and WORKBENCH_APP_WORKERS=0 for the app).
THREADS ?= 4
worker: $(STAMP)
	$(BIN)/python -m lib.cli worker --threads $(THREADS)

# Debian packages the tests need: Chromium for the browser tests, PostgreSQL for the database tests, Tesseract
# (with the OCR languages of WORKBENCH_OCR_LANGUAGES) and poppler's pdftoppm for OCR of scanned PDFs, which the
# app uses too; Redis (redis-server) for the job queue's server-mode tests; Prometheus (prometheus, with promtool)
# scrapes the metrics port in tests/test_metrics.py and checks deploy/'s alert rules.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	test -x /usr/bin/prometheus -a -x /usr/bin/promtool || missing="$$missing prometheus"; \
	dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || missing="$$missing fonts-noto-color-emoji"; \
	command -v tesseract >/dev/null || missing="$$missing tesseract-ocr"; \
	for lang in eng deu fra spa ita nld; do \
	  dpkg -s tesseract-ocr-$$lang >/dev/null 2>&1 || missing="$$missing tesseract-ocr-$$lang"; \
	done; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Lint, format, types and the layer contract; any violation fails `make test`.
lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: $(DEV_STAMP) system-deps lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-data:
	rm -rf data/runtime
