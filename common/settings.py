"""Settings from st.secrets and the environment, in one typed object checked at start (pydantic-settings).

A value of the wrong kind or out of range (an unknown CHATBOT_BACKEND or CHATBOT_FUSION, a negative
or non-numeric limit) is refused when the settings are read, with the setting's name and what it
accepts: the app shows that on its page, the command line prints it and exits with status 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.errors import ConfigurationError, SettingsRefused

# Secrets are read from the same file Streamlit reads, so the CLI and the app agree
# without the core importing streamlit.
SECRETS_FILE = Path(".streamlit/secrets.toml")
# The names backends/registry.py and knowledge/fusion.py accept (tests/test_settings.py keeps them equal).
BACKEND_NAMES = ("offline", "openai", "anthropic", "ollama", "local")
FUSIONS = ("convex", "rrf")
# A TCP port. uvicorn passes any number to the OS, which listens on a random port past 65535.
MIN_PORT, MAX_PORT = 1, 65535


def setting(default: Any, env: str, *, secret: bool = False, help: str = "", **limits: Any) -> Any:
    """A settings field read from `env` (and its own name); `limits` are pydantic's (ge, gt, le...)."""
    return Field(default, validation_alias=env, description=help, json_schema_extra={"env": env, "secret": secret},
                 **limits)


class Settings(BaseSettings):
    """Every knob of the app; each field maps to an upper-case environment variable."""

    # A number given for a text setting in secrets.toml (a token of digits, say) is taken as its text.
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", case_sensitive=True,
                                      coerce_numbers_to_str=True)

    data_dir: Path = setting(Path(".data"), "CHATBOT_DATA_DIR")
    backend: Literal[BACKEND_NAMES] = setting("offline", "CHATBOT_BACKEND")
    model: str = setting("", "CHATBOT_MODEL")
    max_message_chars: int = setting(4000, "CHATBOT_MAX_MESSAGE_CHARS", ge=1)
    window_tokens: int = setting(1500, "CHATBOT_WINDOW_TOKENS", ge=1)
    window_messages: int = setting(12, "CHATBOT_WINDOW_MESSAGES", ge=1)
    top_k: int = setting(4, "CHATBOT_TOP_K", ge=1)
    # How vector and keyword results are combined: "convex" (measured better here) or "rrf".
    retrieval_fusion: Literal[FUSIONS] = setting("convex", "CHATBOT_FUSION")
    # An uploaded file that would make more than this share of the knowledge base's chunks is held
    # for the admin to confirm (knowledge/junk.py); 0 switches the check off.
    max_file_share: float = setting(0.5, "CHATBOT_MAX_FILE_SHARE", ge=0, le=1)
    # Unset, each prompt template's own generation settings apply; set, they override every template.
    temperature: float | None = setting(None, "CHATBOT_TEMPERATURE", ge=0)
    max_tokens: int | None = setting(None, "CHATBOT_MAX_TOKENS", ge=1)
    request_timeout: float = setting(60.0, "CHATBOT_REQUEST_TIMEOUT", gt=0)
    max_retries: int = setting(3, "CHATBOT_MAX_RETRIES", ge=0)
    # 0 keeps conversations for ever.
    session_ttl_days: int = setting(90, "CHATBOT_SESSION_TTL_DAYS", ge=0)
    openai_api_key: str = setting("", "OPENAI_API_KEY", secret=True)
    openai_base_url: str = setting("", "OPENAI_BASE_URL")
    anthropic_api_key: str = setting("", "ANTHROPIC_API_KEY", secret=True)
    anthropic_base_url: str = setting("", "ANTHROPIC_BASE_URL")
    ollama_host: str = setting("", "OLLAMA_HOST")
    local_model_path: str = setting("", "CHATBOT_LOCAL_MODEL")
    local_adapter_path: str = setting("", "CHATBOT_LOCAL_ADAPTER")
    chroma_host: str = setting("", "CHROMA_HOST")
    chroma_port: int = setting(8000, "CHROMA_PORT", ge=MIN_PORT, le=MAX_PORT)
    chroma_token: str = setting("", "CHROMA_TOKEN", secret=True)
    redis_url: str = setting("", "REDIS_URL", secret=True)
    embedding_model: str = setting("", "CHATBOT_EMBEDDING_MODEL")
    admin_password: str = setting("", "CHATBOT_ADMIN_PASSWORD", secret=True)
    # With OpenID Connect set up in the secrets' [auth] section, these accounts are the admins
    # (comma-separated, or a list in secrets.toml); the password form is then off.
    admin_emails: str | list[str] = setting("", "CHATBOT_ADMIN_EMAILS")
    # How long an admin sign-in lasts, across page refreshes.
    admin_session_hours: float = setting(8.0, "CHATBOT_ADMIN_SESSION_HOURS", gt=0)
    # Spending limits of the API backends (OpenAI, Anthropic, Ollama); 0 switches a limit off.
    requests_per_minute: int = setting(20, "CHATBOT_REQUESTS_PER_MINUTE", ge=0)
    conversation_token_limit: int = setting(60_000, "CHATBOT_CONVERSATION_TOKEN_LIMIT", ge=0)
    daily_token_limit: int = setting(2_000_000, "CHATBOT_DAILY_TOKEN_LIMIT", ge=0)
    daily_cost_limit: float = setting(0.0, "CHATBOT_DAILY_COST_LIMIT", ge=0)
    # Price per million tokens, input/output, by model name (or name prefix), for the cost estimate:
    # "gpt-4o-mini=0.15/0.60, claude-haiku=1/5", or a table of [input, output] pairs in secrets.toml.
    model_prices: str | dict[str, Any] = setting("", "CHATBOT_MODEL_PRICES")
    # Where `python -m chatbot serve` (and `make api`) listens; its --host and --port take precedence.
    api_host: str = setting("127.0.0.1", "CHATBOT_API_HOST", min_length=1)
    api_port: int = setting(8000, "CHATBOT_API_PORT", ge=MIN_PORT, le=MAX_PORT)
    # Chatwoot: its address, the agent bot's access token (replies and handoffs go through its API),
    # and the secret its webhooks are signed with (X-Chatwoot-Signature).
    chatwoot_url: str = setting("", "CHATWOOT_URL")
    chatwoot_api_token: str = setting("", "CHATWOOT_API_TOKEN", secret=True)
    chatwoot_webhook_secret: str = setting("", "CHATWOOT_WEBHOOK_SECRET", secret=True)

    @classmethod
    def load(cls, secrets: Mapping[str, Any] | None = None, **overrides: Any) -> "Settings":
        """Build settings: explicit overrides, then secrets, then the environment, then defaults.

        Raises SettingsRefused (a ConfigurationError) naming every refused setting and what it accepts,
        or ConfigurationError when the secrets file is not valid TOML.
        """
        if secrets is None:
            secrets = read_secrets_file(SECRETS_FILE)
        given: dict[str, Any] = {}
        for name in cls.model_fields:
            env = env_name(name)
            if name in secrets:
                given[name] = secrets[name]
            elif env in secrets:
                given[name] = secrets[env]
        given.update({name: value for name, value in overrides.items() if value is not None})
        try:
            return cls(**given)  # init values come first, then the environment (pydantic-settings)
        except ValidationError as exc:
            raise SettingsRefused(problems(exc)) from None

    def __repr_args__(self):
        # Secrets never reach a log through a repr.
        for name, value in super().__repr_args__():
            yield name, "***" if value and _extra(name).get("secret") else value

    def require(self, name: str) -> str:
        """Return a setting's value, or raise an error naming what to fill in."""
        value = getattr(self, name)
        if not value:
            raise ConfigurationError(
                f"Missing setting: set {env_name(name)} in the environment or `{name}` in .streamlit/secrets.toml"
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


def _extra(name: str) -> dict[str, Any]:
    extra = Settings.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def env_name(name: str) -> str:
    """The environment variable of the field `name` (CHATBOT_BACKEND for backend)."""
    return str(_extra(name)["env"])


def _accepted(error: dict) -> str:
    """What a setting accepts, from pydantic's error (its type and context), in words."""
    kind, context = error["type"], error.get("ctx") or {}
    if kind == "literal_error":
        return "choose one of " + str(context.get("expected", "")).replace("'", "").replace(" or ", ", ")
    if kind.startswith("int_"):
        return "it must be a whole number"
    if kind.startswith("float_"):
        return "it must be a number"
    if kind == "string_too_short":
        return "it must not be empty"
    bounds = {"greater_than_equal": "{ge} or more", "greater_than": "more than {gt}",
              "less_than_equal": "{le} or less", "less_than": "less than {lt}"}
    if kind in bounds:
        text = "it must be " + bounds[kind].format(**context)
        return text + " (0 turns it off)" if kind == "greater_than_equal" and context.get("ge") == 0 else text
    return str(error["msg"])


def problems(exc: ValidationError) -> list[str]:
    """One line per refused setting: its environment name, the value given, what it accepts."""
    lines: dict[str, str] = {}
    by_env = {env_name(name): name for name in Settings.model_fields}
    for error in exc.errors():
        where = str(error["loc"][0]) if error["loc"] else ""
        env = where if where in by_env else env_name(where) if where in Settings.model_fields else where
        value = error.get("input")
        shown = "***" if env in by_env and _extra(by_env[env]).get("secret") else repr(value)
        # A union (str | list) reports each arm: the first one says enough.
        lines.setdefault(env, f"{env} is {shown}: {_accepted(error)}")
    return list(lines.values())
