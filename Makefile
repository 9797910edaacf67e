# Two entry points: `make run` and `make test`. Both create .venv if missing and install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: run test install install-dev system-deps bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# A stamp per requirements file: reinstall only when the pins change.
$(VENV)/.installed: requirements.txt requirements-bundled.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-bundled.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev system-deps

# Browser and Redis server for the end-to-end and store tests (Debian packages).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v redis-server >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium redis-server >/dev/null; \
	fi

run: install
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

test: install-dev
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m chatbot bench-turn

clean:
	rm -rf $(VENV) .data
