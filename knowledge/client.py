"""The Chroma client: embedded in the data directory, or a Chroma server by configuration."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from common.errors import ConfigurationError


def _auth_refused(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(word in text for word in ("401", "403", "unauthorized", "forbidden", "autherror", "authentication"))


def make_chroma_client(data_dir: Path | None = None, host: str = "", port: int = 8000, token: str = ""):
    """A Chroma server client when `host` is set (CHROMA_HOST), else a persistent client in `data_dir`."""
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False)
    if not host:
        if data_dir is None:
            raise ConfigurationError("The embedded vector store needs a data directory (CHATBOT_DATA_DIR)")
        return chromadb.PersistentClient(path=str(data_dir), settings=settings)
    ssl = False
    if "://" in host:  # CHROMA_HOST=https://chroma.example.com[:port] is accepted too
        url = urlparse(host)
        ssl = url.scheme == "https"
        host, port = url.hostname or "", url.port or (443 if ssl else port)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        client = chromadb.HttpClient(host=host, port=int(port), ssl=ssl, headers=headers, settings=settings)
        client.heartbeat()
        # The heartbeat is public on some deployments; listing needs the credentials.
        client.count_collections()
    except Exception as exc:  # noqa: BLE001 - chromadb raises ValueError, httpx and its own errors here
        if _auth_refused(exc):
            raise ConfigurationError(
                f"The Chroma server at {host}:{port} refused the credentials: check CHROMA_TOKEN"
            ) from exc
        raise ConfigurationError(
            f"Cannot reach the Chroma server at {host}:{port} ({exc}): check CHROMA_HOST and CHROMA_PORT,"
            " or unset CHROMA_HOST to use the embedded store"
        ) from exc
    return client
