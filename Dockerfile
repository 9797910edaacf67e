# Self-hosted image of the support desk assistant: `docker build -t support-desk .` then
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

# The CPU build of the pinned torch: from PyPI, torch pulls about 2.7 GB of CUDA wheels that a
# CPU host never uses. For a CUDA host, build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# (any index that has torch 2.13.0 for your CUDA version).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY requirements.txt requirements-bundled.txt ./
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0 \
    && pip install -r requirements.txt \
    && pip install --no-deps -r requirements-bundled.txt

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
