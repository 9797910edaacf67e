"""Each method with the same job machinery: QLoRA's 4-bit NF4 base, DoRA and IA3 adapters."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from training import datasets as ds
from training.spec import TrainingSpec

CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qlora") / "model")


def examples(n: int = 4) -> list[dict]:
    return [{"prompt": e["prompt"], "completion": e["completion"]}
            for e in ds.load_chat_jsonl(ds.SAMPLE_CHAT).examples[:n]]


@pytest.fixture
def one_thread():
    """What the trainer does on a CPU: two threads fighting over two busy cores run many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_qlora_model_path_quantises_the_base_and_trains_the_adapter(tiny_model, tmp_path, one_thread):
    """The trainer's own loading and adapter code, run here on bitsandbytes' CPU kernels."""
    import bitsandbytes as bnb
    from datasets import Dataset
    from trl import SFTTrainer

    from training.model_setup import load_model, load_tokenizer, peft_config, sft_config

    spec = TrainingSpec(base_model=str(tiny_model), method="qlora", max_steps=8, learning_rate=1e-2,
                        warmup_ratio=0.0, per_device_train_batch_size=4, gradient_accumulation_steps=1,
                        max_seq_length=128, logging_steps=1, save_steps=100, bnb_4bit_compute_dtype="float32")
    model = load_model(spec, cuda=False)
    assert model.is_loaded_in_4bit
    projection = model.model.layers[0].mlp.down_proj
    assert isinstance(projection, bnb.nn.Linear4bit)
    state = projection.weight.quant_state
    assert state.quant_type == "nf4" and state.nested, "NF4 with double quantisation"
    # prepare_model_for_kbit_training freezes the base and keeps the norms in full precision.
    assert not any(p.requires_grad for p in model.parameters())

    trainer = SFTTrainer(model=model, args=sft_config(spec, tmp_path / "out", cuda=False, has_eval=False),
                         train_dataset=Dataset.from_list(examples()), processing_class=load_tokenizer(str(tiny_model)),
                         peft_config=peft_config(spec))
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    # The QLoRA recipe keeps the adapter in bf16 over the 4-bit base.
    assert {p.dtype for p in trainable.values()} == {torch.bfloat16}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0]
    trainer.model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.skipif(not CUDA, reason="a QLoRA job needs a CUDA GPU")
def test_a_qlora_job_on_cuda_trains_and_chats_in_4_bits(tiny_model, tmp_path):
    from common.types import ChatRequest, Usage
    from backends.local import LocalBackend
    from training.jobs import JobManager

    manager = JobManager(tmp_path / "data")
    spec = TrainingSpec(base_model=str(tiny_model), max_steps=20, learning_rate=1e-2, per_device_train_batch_size=4,
                        gradient_accumulation_steps=1, max_seq_length=256, logging_steps=2, eval_steps=10,
                        save_steps=10, compare_prompts=2, compare_max_new_tokens=12)
    assert spec.method == "qlora"
    job = manager.start(manager.create(spec, examples(), examples(6)[4:]).id)
    deadline = time.monotonic() + 600
    while manager.status(job.id).running and time.monotonic() < deadline:
        time.sleep(1)
    status = manager.status(job.id)
    assert status.state == "completed", manager.log_tail(job.id, 40)
    model_event = next(e for e in manager.progress(job.id) if e["event"] == "model")
    assert model_event["device"] == "cuda" and model_event["optim"] == "paged_adamw_8bit"
    from training.export import load_adapter_info

    info = load_adapter_info(status.adapter_dir)
    assert info.metrics["gpu_peak_mb"] > 0 and info.metrics["peak_memory_mb"] == info.metrics["gpu_peak_mb"]
    backend = LocalBackend(str(tiny_model), adapter_path=status.adapter_dir, load_in_4bit=True)
    pieces = list(backend.stream(ChatRequest(system="", messages=[{"role": "user", "content": "Hello"}],
                                             temperature=0.0, max_tokens=8)))
    assert isinstance(pieces[-1], Usage) and pieces[-1].output_tokens >= 1


@pytest.fixture
def own_signal_handlers():
    """The trainer installs SIGTERM/SIGINT handlers; give the test process its own back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("method,peft_type", [("dora", "LORA"), ("ia3", "IA3")])
def test_dora_and_ia3_jobs_run_through_the_same_trainer(tiny_model, tmp_path, own_signal_handlers, method,
                                                          peft_type):
    from common.types import ChatRequest, Usage
    from backends.local import LocalBackend
    from training import trainer
    from training.jobs import JobManager

    manager = JobManager(tmp_path / "data")
    spec = TrainingSpec(base_model=str(tiny_model), method=method, max_steps=6, learning_rate=1e-2,
                        per_device_train_batch_size=4, gradient_accumulation_steps=1, max_seq_length=256,
                        logging_steps=1, eval_steps=0, save_steps=100, compare_prompts=1, compare_max_new_tokens=8)
    job = manager.create(spec, examples(), examples(6)[4:])
    # In this process rather than a subprocess: the same entry point, without the import cost twice.
    assert trainer.run(manager.job_dir(job.id) / "job.yaml") == 0
    result = json.loads((manager.job_dir(job.id) / "result.json").read_text())
    assert result["state"] == "completed"
    adapter = manager.adapters_dir / job.id
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type
    assert config.get("use_dora", False) is (method == "dora")
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["eval_loss"] is not None and metrics["rouge_l_adapter"] is not None
    reply = list(LocalBackend(str(tiny_model), adapter_path=str(adapter)).stream(
        ChatRequest(system="", messages=[{"role": "user", "content": "Hello"}], temperature=0.0, max_tokens=6)))
    assert isinstance(reply[-1], Usage) and reply[-1].output_tokens >= 1
