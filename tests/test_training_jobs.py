"""The whole fine-tuning path through the real subprocess, on the tiny model: learn, stop, resume, use."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from common.types import ChatRequest, Usage
from common.errors import TrainingJobError
from training import datasets as ds
from training import jobs as jobs_module
from training.evaluation import rouge_l
from training.jobs import JobManager, summarise_progress
from training.spec import TrainingSpec

pytestmark = pytest.mark.slow
WAIT = 300  # seconds; a busy 2-core machine imports torch, transformers and trl slowly


def wait_for(predicate, timeout: float = WAIT, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout} s")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader still "exists" until reaped; it holds no memory and no GPU.
    try:
        return Path(f"/proc/{pgid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-jobs") / "model")


@pytest.fixture
def manager(tmp_path):
    manager = JobManager(tmp_path / "data")
    yield manager
    for status in manager.list():
        if status.running:
            manager.stop(status.id, grace=2)


@pytest.fixture(scope="module")
def memorisable():
    """Four support replies to learn by heart, and two held-out ones."""
    examples = ds.load_chat_jsonl(ds.SAMPLE_CHAT).examples
    return examples[:4], examples[4:6]


def spec_for(tiny_model: Path, **overrides) -> TrainingSpec:
    settings = dict(base_model=str(tiny_model), method="lora", learning_rate=1e-2, warmup_ratio=0.0,
                    per_device_train_batch_size=4, gradient_accumulation_steps=1, max_seq_length=256,
                    logging_steps=1, eval_steps=10, save_steps=5, compare_prompts=2, compare_max_new_tokens=12)
    settings.update(overrides)
    return TrainingSpec(**settings)


def test_job_learns_stops_resumes_saves_and_its_adapter_chats(manager, tiny_model, memorisable):
    train, held_out = memorisable
    # Far more steps than needed, so the job is surely still running when Stop is pressed.
    job = manager.create(spec_for(tiny_model, max_steps=5000, adapter_name="nimbus-tiny"), train, held_out)
    status = manager.start(job.id)
    assert status.state == "running" and status.pid

    # One job at a time: a second start is refused while the first runs.
    other = manager.create(spec_for(tiny_model, max_steps=10), train, held_out)
    with pytest.raises(TrainingJobError, match="one job at a time"):
        manager.start(other.id)

    # A page reload, or another server process, reconnects from the files alone.
    jobs_module._CHILDREN.clear()
    fresh = JobManager(manager.root.parent)
    assert fresh.status(job.id).running
    wait_for(lambda: fresh.checkpoints(job.id))
    progress = summarise_progress(fresh.progress(job.id))
    assert progress["step"] >= 1 and progress["total"] == 5000 and progress["loss"] is not None
    assert progress["eta_s"] is not None and progress["tokens_per_s"]

    stopped = fresh.stop(job.id, grace=60)
    assert stopped.state == "stopped" and stopped.exit_code == 143
    assert not group_alive(status.pid), "Stop must end the whole process group"
    last = fresh.checkpoints(job.id)[-1]
    resume_from = int(last.name.split("-")[1])
    end = fresh.progress(job.id)[-1]
    assert (end["event"], end["state"]) == ("end", "stopped")

    # Resume from the checkpoint, this time to a reachable end.
    fresh.resume(job.id, max_steps=resume_from + 40)
    done = wait_for(lambda: (s := fresh.status(job.id)).finished and s)
    assert done.state == "completed", fresh.log_tail(job.id, 30)
    assert done.exit_code == 0
    events = fresh.progress(job.id)
    begins = [e for e in events if e["event"] == "train_begin"]
    assert [b["step"] for b in begins] == [0, resume_from]
    losses = [e["loss"] for e in events if e["event"] == "log"]
    assert losses[-1] < 0.5 * losses[0], f"loss did not go down: {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert any(e["event"] == "eval" for e in events)

    adapter = Path(done.adapter_dir)
    assert adapter == manager.adapters_dir / "nimbus-tiny"
    for name in ("adapter_config.json", "adapter_model.safetensors", "spec.yaml", "metrics.json", "comparison.json"):
        assert (adapter / name).is_file(), name
    from training.export import list_adapters, runs_table

    info = list_adapters(manager.adapters_dir)[0]
    m = info.metrics
    assert m["steps"] == resume_from + 40 and m["train_loss"] == pytest.approx(losses[-1])
    assert m["perplexity"] == pytest.approx(2.718281828 ** m["eval_loss"], rel=1e-6)
    for key in ("duration_s", "tokens_per_s", "peak_memory_mb", "trainable_params"):
        assert m[key] > 0, key
    rows = info.comparison["rows"]
    assert len(rows) == 2 and all(r["base"] != r["adapter"] for r in rows)
    assert {"rouge_l_base", "rouge_l_adapter", "similarity_base", "similarity_adapter"} <= set(rows[0])
    table = runs_table([info])[0]
    assert table["method"] == "lora" and table["eval loss"] == round(m["eval_loss"], 4)

    # The Local backend loads the adapter and streams what it learned.
    from backends.local import LocalBackend

    tuned = LocalBackend(info.base_model, adapter_path=str(adapter))
    base = LocalBackend(info.base_model)
    reference = train[0]["completion"][0]["content"]
    request = ChatRequest(system="", messages=train[0]["prompt"], temperature=0.0, max_tokens=40)
    pieces = list(tuned.stream(request))
    assert isinstance(pieces[-1], Usage) and len(pieces) > 3
    tuned_reply = "".join(pieces[:-1])
    # The tuned reply follows the memorised answer; the untrained base model's does not.
    assert rouge_l(tuned_reply, reference) > rouge_l(base.complete(request), reference) + 0.25

    # Merge and export runs as a job too, and the merged model answers like base + adapter.
    merge = manager.start(manager.create_merge("nimbus-tiny").id)
    merged = wait_for(lambda: (s := manager.status(merge.id)).finished and s)
    assert merged.state == "completed", manager.log_tail(merge.id, 30)
    merged_dir = manager.merged_dir / "nimbus-tiny"
    assert (merged_dir / "config.json").is_file() and not (merged_dir / "adapter_config.json").exists()
    assert LocalBackend(str(merged_dir)).complete(request) == tuned_reply
    with pytest.raises(TrainingJobError, match="already holds a merged model"):
        manager.create_merge("nimbus-tiny")


def test_a_failed_job_keeps_its_status_exit_code_and_log(manager, tiny_model, memorisable, tmp_path):
    train, held_out = memorisable
    # The page refuses this before launching; the trainer must refuse it on its own too.
    import torch

    broken = {"base_model": str(tmp_path / "no-such-model")} if torch.cuda.is_available() else {"method": "qlora"}
    job = manager.create(spec_for(tiny_model, max_steps=5, **broken), train, held_out)
    manager.start(job.id)
    status = wait_for(lambda: (s := manager.status(job.id)).finished and s)
    assert status.state == "failed" and status.exit_code == 2
    expected = "Cannot load" if torch.cuda.is_available() else "QLoRA needs a CUDA GPU"
    assert expected in status.error
    assert expected in manager.log_tail(job.id)
    # A reload sees the same outcome, and the job cannot be resumed without a checkpoint.
    again = JobManager(manager.root.parent).status(job.id)
    assert (again.state, again.exit_code, again.error) == (status.state, status.exit_code, status.error)
    with pytest.raises(TrainingJobError, match="no checkpoint"):
        manager.resume(job.id)
    manager.delete(job.id)
    assert job.id not in [s.id for s in manager.list()]


def test_adapter_names_are_unique(manager, tiny_model, memorisable):
    train, held_out = memorisable
    manager.create(spec_for(tiny_model, adapter_name="same"), train, held_out)
    with pytest.raises(TrainingJobError, match="already save an adapter named 'same'"):
        manager.create(spec_for(tiny_model, adapter_name="same"), train, held_out)
    (manager.adapters_dir / "taken").mkdir()
    with pytest.raises(TrainingJobError, match="already exists"):
        manager.create(spec_for(tiny_model, adapter_name="taken"), train, held_out)
