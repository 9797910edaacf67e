"""The backend registry: every name builds its class from settings, and each class says what it can do."""

from __future__ import annotations

import pytest

from backends.anthropic_backend import AnthropicBackend
from backends.local import LocalBackend
from backends.offline import OfflineBackend
from backends.ollama_backend import OllamaBackend
from backends.openai_backend import OpenAIBackend
from backends.registry import BACKENDS, backend_class, make_backend
from common.errors import ConfigurationError
from common.settings import Settings


def test_every_backend_is_offered_in_order():
    assert BACKENDS == ("offline", "openai", "anthropic", "ollama", "local")


def test_offline_needs_no_settings():
    # The pages pass the local folder options to every backend; the others ignore them.
    backend = make_backend("offline", Settings(), model_path="", adapter_path="")

    assert isinstance(backend, OfflineBackend) and backend.name == "offline"


def test_openai_builds_for_a_compatible_server_without_a_key():
    backend = make_backend("openai", Settings(openai_base_url="http://127.0.0.1:9/v1"), model="qwen2.5-7b")

    assert isinstance(backend, OpenAIBackend)
    assert (backend.name, backend.model, backend.base_url) == ("openai", "qwen2.5-7b", "http://127.0.0.1:9/v1")


def test_anthropic_builds_with_a_key():
    backend = make_backend("anthropic", Settings(anthropic_api_key="sk-ant-test"))

    assert isinstance(backend, AnthropicBackend) and backend.name == "anthropic"


def test_ollama_builds_with_a_host():
    backend = make_backend("ollama", Settings(ollama_host="http://127.0.0.1:9"), model="qwen2.5")

    assert isinstance(backend, OllamaBackend)
    assert (backend.host, backend.model) == ("http://127.0.0.1:9", "qwen2.5")


def test_local_without_a_model_names_the_setting():
    assert backend_class("local") is LocalBackend
    with pytest.raises(ConfigurationError, match="CHATBOT_LOCAL_MODEL"):
        make_backend("local", Settings())


def test_an_unknown_name_lists_the_choices_and_the_setting():
    with pytest.raises(ConfigurationError) as caught:
        make_backend("gpt5", Settings())

    message = str(caught.value)
    assert "'gpt5'" in message and "CHATBOT_BACKEND" in message
    assert all(name in message for name in BACKENDS)


@pytest.mark.parametrize(
    "name, can_classify, can_summarise, needs_key, is_local, model_choice",
    [
        ("offline", False, False, False, True, ""),
        ("openai", True, True, True, False, "name"),
        ("anthropic", True, True, True, False, "name"),
        ("ollama", True, True, False, False, "name"),
        ("local", True, True, False, True, "folder"),
    ],
)
def test_capabilities_are_flags_on_the_class(name, can_classify, can_summarise, needs_key, is_local,
                                             model_choice):
    cls = backend_class(name)

    assert cls.name == name
    assert (cls.can_classify, cls.can_summarise, cls.needs_key, cls.is_local, cls.model_choice) == (
        can_classify, can_summarise, needs_key, is_local, model_choice)
