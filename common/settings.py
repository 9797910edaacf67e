"""Settings from st.secrets and the environment, in one typed object."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from common.errors import ConfigurationError

# Secrets are read from the same file Streamlit reads, so the CLI and the app agree
# without the core importing streamlit.
SECRETS_FILE = Path(".streamlit/secrets.toml")


def _coerce(value: Any, kind: type) -> Any:
    if kind is bool and isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    if kind in (int, float) and isinstance(value, str):
        return kind(value.strip())
    return value


@dataclass
class Settings:
    """Every knob of the app; each field maps to an upper-case environment variable."""

    data_dir: Path = field(default=Path(".data"), metadata={"env": "CHATBOT_DATA_DIR"})
    backend: str = field(default="offline", metadata={"env": "CHATBOT_BACKEND"})
    model: str = field(default="", metadata={"env": "CHATBOT_MODEL"})
    max_message_chars: int = field(default=4000, metadata={"env": "CHATBOT_MAX_MESSAGE_CHARS"})
    window_tokens: int = field(default=1500, metadata={"env": "CHATBOT_WINDOW_TOKENS"})
    window_messages: int = field(default=12, metadata={"env": "CHATBOT_WINDOW_MESSAGES"})
    top_k: int = field(default=4, metadata={"env": "CHATBOT_TOP_K"})
    # How vector and keyword results are combined: "convex" (measured better here) or "rrf".
    retrieval_fusion: str = field(default="convex", metadata={"env": "CHATBOT_FUSION"})
    # Unset, each prompt template's own generation settings apply; set, they override every template.
    temperature: float | None = field(default=None, metadata={"env": "CHATBOT_TEMPERATURE", "type": float})
    max_tokens: int | None = field(default=None, metadata={"env": "CHATBOT_MAX_TOKENS", "type": int})
    request_timeout: float = field(default=60.0, metadata={"env": "CHATBOT_REQUEST_TIMEOUT"})
    max_retries: int = field(default=3, metadata={"env": "CHATBOT_MAX_RETRIES"})
    session_ttl_days: int = field(default=90, metadata={"env": "CHATBOT_SESSION_TTL_DAYS"})
    openai_api_key: str = field(default="", metadata={"env": "OPENAI_API_KEY", "secret": True})
    openai_base_url: str = field(default="", metadata={"env": "OPENAI_BASE_URL"})
    anthropic_api_key: str = field(default="", metadata={"env": "ANTHROPIC_API_KEY", "secret": True})
    anthropic_base_url: str = field(default="", metadata={"env": "ANTHROPIC_BASE_URL"})
    ollama_host: str = field(default="", metadata={"env": "OLLAMA_HOST"})
    local_model_path: str = field(default="", metadata={"env": "CHATBOT_LOCAL_MODEL"})
    local_adapter_path: str = field(default="", metadata={"env": "CHATBOT_LOCAL_ADAPTER"})
    chroma_host: str = field(default="", metadata={"env": "CHROMA_HOST"})
    chroma_port: int = field(default=8000, metadata={"env": "CHROMA_PORT"})
    chroma_token: str = field(default="", metadata={"env": "CHROMA_TOKEN", "secret": True})
    redis_url: str = field(default="", metadata={"env": "REDIS_URL", "secret": True})
    embedding_model: str = field(default="", metadata={"env": "CHATBOT_EMBEDDING_MODEL"})
    admin_password: str = field(default="", metadata={"env": "CHATBOT_ADMIN_PASSWORD", "secret": True})
    # With OpenID Connect set up in the secrets' [auth] section, these accounts are the admins
    # (comma-separated, or a list in secrets.toml); the password form is then off.
    admin_emails: str = field(default="", metadata={"env": "CHATBOT_ADMIN_EMAILS"})
    # How long an admin sign-in lasts, across page refreshes.
    admin_session_hours: float = field(default=8.0, metadata={"env": "CHATBOT_ADMIN_SESSION_HOURS"})
    # Spending limits of the API backends (OpenAI, Anthropic, Ollama); 0 switches a limit off.
    requests_per_minute: int = field(default=20, metadata={"env": "CHATBOT_REQUESTS_PER_MINUTE"})
    conversation_token_limit: int = field(default=60_000, metadata={"env": "CHATBOT_CONVERSATION_TOKEN_LIMIT"})
    daily_token_limit: int = field(default=2_000_000, metadata={"env": "CHATBOT_DAILY_TOKEN_LIMIT"})
    daily_cost_limit: float = field(default=0.0, metadata={"env": "CHATBOT_DAILY_COST_LIMIT"})
    # Price per million tokens, input/output, by model name (or name prefix), for the cost estimate:
    # "gpt-4o-mini=0.15/0.60, claude-haiku=1/5", or a table of [input, output] pairs in secrets.toml.
    model_prices: str = field(default="", metadata={"env": "CHATBOT_MODEL_PRICES"})
    # Chatwoot: its address, the agent bot's access token (replies and handoffs go through its API),
    # and the secret its webhooks are signed with (X-Chatwoot-Signature).
    chatwoot_url: str = field(default="", metadata={"env": "CHATWOOT_URL"})
    chatwoot_api_token: str = field(default="", metadata={"env": "CHATWOOT_API_TOKEN", "secret": True})
    chatwoot_webhook_secret: str = field(default="", metadata={"env": "CHATWOOT_WEBHOOK_SECRET", "secret": True})

    @classmethod
    def load(cls, secrets: Mapping[str, Any] | None = None, **overrides: Any) -> "Settings":
        """Build settings: explicit overrides, then secrets, then the environment, then defaults."""
        if secrets is None:
            secrets = read_secrets_file(SECRETS_FILE)
        values: dict[str, Any] = {}
        for f in fields(cls):
            env_name = f.metadata["env"]
            kind = f.metadata.get("type", type(f.default))
            if f.name in overrides and overrides[f.name] is not None:
                raw = overrides[f.name]
            elif f.name in secrets:
                raw = secrets[f.name]
            elif env_name in secrets:
                raw = secrets[env_name]
            elif env_name in os.environ:
                raw = os.environ[env_name]
            else:
                continue
            try:
                values[f.name] = Path(raw) if isinstance(f.default, Path) else _coerce(raw, kind)
            except ValueError as exc:
                raise ConfigurationError(f"{env_name} must be a {kind.__name__}, got {raw!r}") from exc
        return cls(**values)

    def __repr__(self) -> str:
        # Secrets never reach a log through a repr.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("secret") and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def require(self, name: str) -> str:
        """Return a setting's value, or raise an error naming what to fill in."""
        value = getattr(self, name)
        if not value:
            env_name = next(f.metadata["env"] for f in fields(self) if f.name == name)
            raise ConfigurationError(
                f"Missing setting: set {env_name} in the environment or `{name}` in .streamlit/secrets.toml"
            )
        return value

    def path(self, *parts: str) -> Path:
        """A path inside the data directory, its parent created."""
        target = Path(self.data_dir).joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


def read_secrets_file(path: Path) -> dict[str, Any]:
    """Read a secrets.toml if there is one; a missing file is no secrets."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
