# Self-hosted image of the support desk assistant: `docker build -t support-desk .` (the chat;
# add --build-arg PROFILE=train for training and the Local backend) then
#   docker run -p 8501:8501 -v support-desk-data:/data support-desk
# Runtime state (conversations, vector store, prompt versions, jobs, adapters) lives in the /data
# volume. Keys come from the environment (-e OPENAI_API_KEY=...) or a mounted secrets file
# (-v ./secrets.toml:/app/.streamlit/secrets.toml:ro). See docs/deploy.md.
FROM python:3.11-slim-bookworm

# tini reaps exited child processes (the embedded Redis server is one) and passes SIGTERM on,
# so a stopped container shuts Streamlit and its embedded Redis down cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    CHATBOT_DATA_DIR=/data

WORKDIR /app

# PROFILE=chat (the default) installs requirements.txt: the chat, without torch, as on Streamlit
# Community Cloud. PROFILE=train adds requirements-train.txt for the Training page and the Local
# backend, with torch from TORCH_INDEX: the CPU build by default (from PyPI, torch pulls about 2.7 GB
# of CUDA wheels that a CPU host never uses); for a GPU host, build with
# --build-arg PROFILE=train --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (any index that has torch 2.13.0 for your CUDA version) and run with --gpus all.
ARG PROFILE=chat
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements.txt requirements-train.txt requirements-nodeps.txt ./
RUN pip install -r requirements.txt \
    && if [ "$PROFILE" = train ]; then \
        pip install --index-url "$TORCH_INDEX" torch==2.13.0 \
        && pip install -r requirements-train.txt \
        && if grep -qv '^[[:space:]]*\(#\|$\)' requirements-nodeps.txt; then \
            pip install --no-deps -r requirements-nodeps.txt; fi; \
    elif [ "$PROFILE" != chat ]; then echo "PROFILE must be chat or train" >&2; exit 1; fi

COPY . .
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /data \
    && chown -R app:app /data
USER app

VOLUME ["/data"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true"]
