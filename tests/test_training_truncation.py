"""Examples that truncation would leave without a reply token: reported before launch, left out, counted.

The input is a support ticket whose prompt alone is longer than a 64-token max length, six times, beside two
short ones: trl drops such examples without a word, so a job used to report all eight as trained.
"""

from __future__ import annotations

import json
import signal

import pytest

from common.errors import DatasetError
from training import datasets as ds
from training.jobs import summarise_progress
from training.spec import TrainingSpec
from training.truncation import fit, spans

MAX_LEN = 64
LONG_PROMPT = " ".join(["My order NH-4829173 shipped on the 3rd, tracking 1Z84J2X0391, and it has sat at the depot "
                        "since."] * 4)


def orders(n_long: int = 6, n_short: int = 2) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": LONG_PROMPT if i < n_long else "Where is my parcel?"}],
             "completion": [{"role": "assistant",
                             "content": f"Sorry about the delay; I opened a trace with the carrier, ref T-{i}."}],
             "origin": f"line {i + 1}"} for i in range(n_long + n_short)]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-trunc") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from training.model_setup import load_tokenizer

    return load_tokenizer(str(tiny_model))


@pytest.fixture
def own_signal_handlers():
    """The trainer installs SIGTERM/SIGINT handlers; give the test process its own back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_examples_whose_prompt_fills_the_max_length_are_reported_and_left_out(tokenizer):
    built = ds.build(ds.LoadResult(source="orders.jsonl", examples=orders(), records=8), tokenizer,
                     max_seq_length=MAX_LEN, val_fraction=0.0, drop_over_long=False)
    assert len(built.train) == 2 and built.left_out_for_length == 6 and built.left_out_no_reply == 6
    assert all(e["prompt"][0]["content"] == "Where is my parcel?" for e in built.train)
    assert built.length_message() == ("6 examples are longer than the max length (64 tokens) and will be left out: "
                                      "the prompt alone fills it, so no reply token would be trained on.")
    warnings = [str(i) for i in built.issues if i.level == "warning"]
    assert len(warnings) == 6 and all("no reply token would be trained on: left out" in w for w in warnings)
    assert "line 1" in warnings[0]
    assert built.tokens_trained == sum(s.reply_tokens(MAX_LEN) for s in spans(built.train, tokenizer)) > 0


def test_an_over_long_example_that_keeps_part_of_its_reply_is_truncated_or_left_out_by_choice(tokenizer):
    whole = spans(orders(0, 1), tokenizer)[0]
    max_len = whole.reply_start + 3  # the prompt fits, three reply tokens survive
    example = orders(0, 1)
    truncated = ds.build(ds.LoadResult(source="t", examples=example, records=1), tokenizer, max_len, 0.0,
                         drop_over_long=False)
    assert len(truncated.train) == 1 and truncated.left_out_for_length == 0 and truncated.length_message() is None
    assert truncated.tokens_trained == 3
    assert "will be truncated (3 reply token(s) kept)" in str(truncated.issues[0])
    with pytest.raises(DatasetError, match="1 example\\(s\\) are longer than the"):
        ds.build(ds.LoadResult(source="t", examples=example, records=1), tokenizer, max_len, 0.0)
    mixed = ds.build(ds.LoadResult(source="t", examples=orders(1, 2), records=3), tokenizer, max_len, 0.0,
                     drop_over_long=False)
    assert len(mixed.train) == 2
    assert mixed.length_message().startswith("1 example is longer than the max length")
    long_reply = {**orders(0, 1)[0], "completion": [{"role": "assistant", "content": "word " * 80}]}
    both = ds.build(ds.LoadResult(source="t", examples=orders(1, 1) + [long_reply], records=3), tokenizer, MAX_LEN,
                    0.0)
    assert len(both.train) == 1 and both.left_out_for_length == 2 and both.left_out_no_reply == 1
    assert both.length_message() == ("2 examples are longer than the max length (64 tokens) and will be left out; "
                                     "in 1 of them the prompt alone fills it, so no reply token would be trained on.")


def test_the_count_matches_what_the_trainer_itself_keeps(tiny_model, tokenizer, tmp_path):
    """Real trl preparation of the same examples: the same examples survive, with the same reply tokens."""
    from datasets import Dataset
    from trl import SFTTrainer

    from training.model_setup import load_model, peft_config, sft_config

    examples = orders() + [{**orders(0, 1)[0], "completion": [{"role": "assistant", "content": "word " * 80}]}]
    spec = TrainingSpec(base_model=str(tiny_model), method="lora", max_seq_length=MAX_LEN, max_steps=1)
    model = load_model(spec, cuda=False)
    trainer = SFTTrainer(model=model, args=sft_config(spec, tmp_path / "out", False, False),
                         train_dataset=Dataset.from_list([{k: e[k] for k in ("prompt", "completion")}
                                                          for e in examples]),
                         processing_class=tokenizer, peft_config=peft_config(spec, model))
    fitted = fit(examples, tokenizer, MAX_LEN)
    assert len(fitted.kept) == len(trainer.train_dataset) == 3 and len(fitted.left_out) == 6
    assert fitted.tokens_trained == sum(sum(1 for t in row if t != -100) for row in trainer.train_dataset["labels"])


def run_job(tmp_path, tiny_model, train, **create):
    from training import trainer
    from training.jobs import JobManager

    manager = JobManager(tmp_path / "data")
    spec = TrainingSpec(base_model=str(tiny_model), method="lora", learning_rate=1e-2, warmup_ratio=0.0,
                        per_device_train_batch_size=2, gradient_accumulation_steps=1, max_seq_length=MAX_LEN,
                        max_steps=8, logging_steps=1, eval_steps=0, save_steps=100, compare_prompts=0)
    job = manager.create(spec, train, [], **create)
    # In this process rather than a subprocess: the same entry point, without the import cost twice.
    assert trainer.run(manager.job_dir(job.id) / "job.yaml") == 0
    result = json.loads((manager.job_dir(job.id) / "result.json").read_text())
    assert result["state"] == "completed"
    return result["metrics"], manager.progress(job.id)


@pytest.mark.slow
def test_a_job_given_unfit_examples_leaves_them_out_and_its_metrics_say_what_it_trained_on(
        tiny_model, tokenizer, tmp_path, own_signal_handlers):
    metrics, events = run_job(tmp_path, tiny_model, orders())
    assert metrics["train_examples"] == metrics["examples_used"] == 2
    assert metrics["examples_left_out_for_length"] == 6
    assert metrics["tokens_trained"] == fit(orders(), tokenizer, MAX_LEN).tokens_trained > 0
    # 8 steps of 2 examples: the epochs the trainer counted agree with two examples, not eight.
    assert round(metrics["steps"] * 2 / metrics["epochs"]) == metrics["examples_used"]
    data = summarise_progress(events)["data"]  # what the page's job panel reads
    assert data["examples_used"] == 2 and data["examples_left_out_for_length"] == 6


@pytest.mark.slow
def test_a_job_from_the_dataset_reports_what_the_dataset_left_out(tiny_model, tokenizer, tmp_path,
                                                                   own_signal_handlers):
    built = ds.build(ds.LoadResult(source="orders.jsonl", examples=orders(), records=8), tokenizer,
                     max_seq_length=MAX_LEN, val_fraction=0.0, drop_over_long=False)
    metrics, _ = run_job(tmp_path, tiny_model, built.train, left_out_for_length=built.left_out_for_length)
    assert metrics["examples_used"] == 2 and metrics["examples_left_out_for_length"] == 6
    assert metrics["tokens_trained"] == built.tokens_trained
