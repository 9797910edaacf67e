"""The Local backend on the tiny model: streamed replies, real token counts, caching and clear errors."""

from __future__ import annotations

import pytest

from common.types import ChatRequest, Usage
from backends.base import estimate_tokens
from common.settings import Settings
from common.errors import ConfigurationError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-local") / "model")


@pytest.fixture(scope="module")
def backend(tiny_model):
    from backends.local import LocalBackend

    return LocalBackend(str(tiny_model))


def ask(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(system=kwargs.pop("system", ""), messages=[{"role": "user", "content": text}],
                       temperature=kwargs.pop("temperature", 0.0), max_tokens=kwargs.pop("max_tokens", 24), **kwargs)


def test_reply_streams_in_pieces_then_reports_usage(backend):
    pieces = list(backend.stream(ask("My Nimbus Cam is offline", max_tokens=24)))
    text, usage = pieces[:-1], pieces[-1]
    assert isinstance(usage, Usage) and all(isinstance(p, str) for p in text)
    assert len(text) >= 2, "the reply should arrive in several pieces"
    assert 1 <= usage.output_tokens <= 24
    templated = backend.tokenizer.apply_chat_template([{"role": "user", "content": "My Nimbus Cam is offline"}],
                                                      add_generation_prompt=True, tokenize=True)
    assert usage.input_tokens == len(templated["input_ids"])


def test_greedy_replies_are_repeatable_and_the_system_prompt_reaches_the_model(backend):
    first = backend.complete(ask("Where is my order?"))
    assert first and backend.complete(ask("Where is my order?")) == first
    plain = list(backend.stream(ask("Where is my order?", max_tokens=1)))[-1]
    with_system = list(backend.stream(ask("Where is my order?", system="You are the Nimbus Home desk.",
                                          max_tokens=1)))[-1]
    assert with_system.input_tokens > plain.input_tokens


def test_count_tokens_uses_the_model_tokenizer(backend):
    text = "Nimbus Thermo shows error E-31 after the firmware update"
    n = backend.count_tokens(text)
    assert n == len(backend.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert n != estimate_tokens(text)


def test_model_is_loaded_once_per_process(tiny_model, backend):
    from backends.local import LocalBackend

    again = LocalBackend(str(tiny_model))
    assert again._loaded is backend._loaded
    assert again.name == "local" and again.model == "model"


def test_a_reader_that_stops_early_frees_the_model_for_the_next_reply(backend):
    stream = backend.stream(ask("Tell me about Nimbus Plus", max_tokens=200))
    next(stream)
    stream.close()
    # The lock is free again only if the abandoned generation ended.
    pieces = list(backend.stream(ask("How do I reset my thermostat?", max_tokens=5)))
    assert isinstance(pieces[-1], Usage) and pieces[-1].output_tokens <= 5


def test_from_settings_reads_the_local_model_and_adapter_settings(tiny_model, tmp_path):
    from backends.local import LocalBackend

    backend = LocalBackend.from_settings(Settings(data_dir=tmp_path, local_model_path=str(tiny_model)))
    assert backend.model_path == str(tiny_model.resolve()) and backend.adapter_path is None
    with pytest.raises(ConfigurationError, match="CHATBOT_LOCAL_MODEL"):
        LocalBackend.from_settings(Settings(data_dir=tmp_path))
    with pytest.raises(ConfigurationError, match="CHATBOT_LOCAL_ADAPTER"):
        LocalBackend.from_settings(Settings(data_dir=tmp_path, local_model_path=str(tiny_model),
                                            local_adapter_path=str(tmp_path)))


def test_a_missing_model_folder_names_the_setting(tmp_path):
    from backends.local import LocalBackend

    with pytest.raises(ConfigurationError, match="CHATBOT_LOCAL_MODEL: no model folder"):
        LocalBackend(str(tmp_path / "nope"))


def test_four_bit_without_cuda_is_refused(tiny_model):
    import torch

    from backends.local import LocalBackend

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigurationError, match="4-bit loading needs a CUDA GPU"):
        LocalBackend(str(tiny_model), load_in_4bit=True)
