"""The demo fine-tune: LoRA on the bundled SmolLM2-135M-Instruct with the shipped Bitext requests, sized for a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.bundled import BUNDLED_MODEL
from training import datasets as ds
from training.spec import TrainingSpec

# Minutes on two CPU cores: rank 8 on the attention's query and value projections (about 0.46M trainable
# weights), 128-token examples (longer replies are truncated), four examples a step, no activation
# recomputation (the model is small enough to keep them), a learning rate high enough to move in 60 steps.
DEMO_SETTINGS: dict[str, Any] = dict(
    base_model=BUNDLED_MODEL, method="lora", device="auto", lora_r=8, lora_alpha=16, lora_dropout=0.05,
    target_modules="q_proj,v_proj", learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05,
    max_steps=60, max_seq_length=128, per_device_train_batch_size=4, gradient_accumulation_steps=1,
    gradient_checkpointing=False, logging_steps=5, eval_steps=30, save_steps=20, save_total_limit=1,
    compare_prompts=8, compare_max_new_tokens=96,
)
DEMO_VALIDATION_SHARE = 0.1
# Held-out examples scored for the eval loss (before, during and after): enough for a stable mean, few
# enough that each evaluation takes about a minute on a CPU.
DEMO_EVAL_EXAMPLES = 40


def demo_spec(**overrides: Any) -> TrainingSpec:
    """The demo's training settings, with any of them replaced."""
    return TrainingSpec(**{**DEMO_SETTINGS, **overrides})


def demo_dataset(tokenizer: Any, max_seq_length: int, examples: int | None = None,
                 validation: int | None = None, seed: int = 42) -> ds.BuiltDataset:
    """The shipped Bitext rows, measured by the model's tokenizer and split; over-long replies are kept
    (the trainer truncates them), so every intent stays in."""
    built = ds.build(ds.load_bitext(), tokenizer, max_seq_length, DEMO_VALIDATION_SHARE, seed, drop_over_long=False)
    if examples:
        built.train = built.train[:examples]
    built.validation = built.validation[:DEMO_EVAL_EXAMPLES if validation is None else validation]
    return built


def run_demo(out: str | Path, steps: int | None = None, examples: int | None = None,
             validation: int | None = None, compare: int | None = None, **overrides: Any) -> dict[str, Any]:
    """Train the demo adapter into `out`/adapter (the job's files in `out`/job); returns the job's result."""
    from backends.bundled import resolve_model_path
    from common.errors import TrainingJobError
    from training import trainer
    from training.progress import DATASET_FILE, RESULT_FILE, read_json, write_json

    out = Path(out).resolve()
    if (out / "adapter" / "adapter_config.json").is_file():
        raise TrainingJobError(f"{out / 'adapter'} already holds an adapter; choose another --out folder.")
    if steps:
        overrides["max_steps"] = steps
    if compare is not None:
        overrides["compare_prompts"] = compare
    spec = demo_spec(**overrides)
    spec.base_model = resolve_model_path(spec.base_model, progress=print)
    built = demo_dataset(trainer.load_tokenizer(spec.base_model), spec.max_seq_length, examples, validation)
    job = out / "job"
    job.mkdir(parents=True, exist_ok=True)
    ds.write_jsonl(built.train, job / "train.jsonl")
    ds.write_jsonl(built.validation, job / "eval.jsonl")
    if built.left_out_for_length:
        write_json(job / DATASET_FILE, {"left_out_for_length": built.left_out_for_length})
    spec.train_file, spec.eval_file, spec.adapter_name = "train.jsonl", "eval.jsonl" if built.validation else "", \
        "adapter"
    spec.save(job / "job.yaml")
    print(f"training on {len(built.train)} examples, {len(built.validation)} held out; {spec.max_steps} steps "
          f"(log: {job / 'progress.jsonl'})", flush=True)
    if built.length_message():
        print(built.length_message(), flush=True)
    trainer.run(job / "job.yaml", adapters_dir=out)
    return read_json(job / RESULT_FILE) or {}
