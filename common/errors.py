"""Typed errors that pages and the CLI show to the user."""

from __future__ import annotations


ECHO_CHARS = 80  # of a value sent to us that a message quotes: enough to recognise it


def shown(value: object, limit: int = ECHO_CHARS) -> str:
    """`value` as an error message quotes it: its first `limit` characters and "…" when longer, so that a
    message never grows with what was sent (a 100 kB name), and any lone surrogate as its escape, so
    that the message is UTF-8 text whatever was sent."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:  # an int past CPython's digit limit has no decimal form
        text = f"a number of {value.bit_length():,} bits" if isinstance(value, int) else "(a value not shown)"
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ChatbotError(Exception):
    """Base of every error the app reports to a person; `str()` is the message."""


class InputRejected(ChatbotError):
    """A customer message that cannot be sent as it is (too long, say)."""


class ConfigurationError(ChatbotError):
    """A setting is missing or wrong; the message names the setting to fill in."""


class SettingsRefused(ConfigurationError):
    """Settings read at start that hold refused values: `problems` has one line per setting (its name,
    the value given, what it accepts); the message is those lines joined by "; "."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class BackendError(ChatbotError):
    """An LLM backend failed; the conversation stays usable. Fields: provider, HTTP status, seconds asked to wait."""

    retryable = False

    def __init__(self, message: str = "", *, provider: str = "", status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retry_after = retry_after


class BackendAuthError(BackendError):
    """The backend refused the credentials (401/403)."""


class BackendRateLimited(BackendError):
    """The backend kept answering 429 after every retry."""

    retryable = True


class BackendUnavailable(BackendError):
    """The backend answered 5xx or could not be reached after every retry."""

    retryable = True


class BackendUnreachable(BackendUnavailable):
    """Nothing answered at the backend's address (no server, a wrong URL) after every retry."""


class BackendTimeout(BackendError):
    """The backend did not answer in time."""

    retryable = True


class BackendStreamBroken(BackendError):
    """The reply stream ended before the backend said it was complete."""


class SpendingLimitReached(BackendError):
    """A spending or rate limit stopped an API call before it was sent; nothing was spent.

    `limit` names it ("requests", "conversation", "daily_tokens", "daily_cost", "unavailable");
    `retry_after` is the seconds until it resets (None when it does not reset by itself).
    """

    def __init__(self, message: str, *, limit: str = "", retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after)
        self.limit = limit


class ContextTooLong(BackendError):
    """The prompt does not fit in the model's context window; retrying cannot help."""

    def __init__(self, message: str, prompt_tokens: int = 0, max_context: int = 0):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.max_context = max_context


class IngestError(ChatbotError):
    """A document could not be ingested; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class StoreUnavailable(ChatbotError):
    """The conversation store (Redis) cannot be reached."""


class DatasetError(ChatbotError):
    """A training dataset cannot be used; the message names the file, the line and the field."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.line = line
        self.field = field


class TrainingJobError(ChatbotError):
    """A fine-tuning job cannot be started, stopped, resumed or exported as asked."""


class PromptValidationError(ChatbotError):
    """A prompt template's text cannot be saved; `line` (1-based) points at the problem when known."""

    def __init__(self, message: str, line: int | None = None, field: str | None = None):
        super().__init__(f"Line {line}: {message}" if line else message)
        self.reason = message
        self.line = line
        self.field = field


class StaleVersionError(ChatbotError):
    """A prompt save based on a version that is no longer the latest; nothing was written."""

    def __init__(self, message: str, base_version: int = 0, latest_version: int = 0):
        super().__init__(message)
        self.base_version = base_version
        self.latest_version = latest_version


class PromptNotFound(ChatbotError):
    """No prompt template, or no version of it, by that name or number."""


class ConversationNotFound(ChatbotError):
    """A stored conversation (or a reply in it) was deleted, expired or never existed."""


class VectorStoreUnavailable(ChatbotError):
    """The vector store (a Chroma server) cannot be reached; keyword search still answers."""


class VectorStoreBusy(VectorStoreUnavailable):
    """Another process holds the embedded vector store's write lock for longer than a write waits."""


class EmbeddingModelChanged(VectorStoreUnavailable):
    """The knowledge base holds vectors of another embedding model (another model id or dimension):
    vector search is off and writes wait until it is rebuilt; keyword search still answers."""
