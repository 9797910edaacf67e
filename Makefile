# Two entry points: `make run` and `make test`. Both create .venv if missing and install the
# training requirements (the chat's requirements.txt included); see README "Install profiles".
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

# `make api`: the HTTP API, same data directory as `make run`, where the settings CHATBOT_API_HOST and
# CHATBOT_API_PORT say (127.0.0.1:8000 unset); `make api API_PORT=8010 API_HOST=0.0.0.0` overrides them.
API_HOST ?=
API_PORT ?=

.PHONY: run api test install install-train install-dev system-deps bench worker clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# A stamp per requirements file: reinstall only when the pins change.
# requirements.txt: the chat alone (what Streamlit Community Cloud installs).
$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

# requirements-train.txt: the Training page and the Local backend (torch, transformers, peft, trl...),
# then the packages of requirements-nodeps.txt without their declared dependencies.
$(VENV)/.installed-train: requirements-train.txt requirements-nodeps.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-train.txt
	if grep -qv '^[[:space:]]*\(#\|$$\)' requirements-nodeps.txt; then \
		$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt; fi
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed-train
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

install-train: $(VENV)/.installed-train

install-dev: $(VENV)/.installed-dev system-deps

# Browser and Redis server for the end-to-end and store tests (Debian packages).
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v redis-server >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium redis-server >/dev/null; \
	fi

run: install-train
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

api: install
	$(BIN)/python -m chatbot serve $(if $(API_HOST),--host $(API_HOST)) $(if $(API_PORT),--port $(API_PORT))

test: install-dev
	$(BIN)/python -m pytest -q

# Sends webhooks (with their retries) and answers Chatwoot; run it beside `make run`.
worker: install
	$(BIN)/python -m chatbot webhook-worker

bench: install
	$(BIN)/python -m chatbot bench-turn

clean:
	rm -rf $(VENV) .data
