"""The fine-tuning process behind `python -m chatbot train --config job.yaml` (one job per process)."""

from __future__ import annotations

import logging
import math
import os
import resource
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from common.errors import ChatbotError, DatasetError, TrainingJobError
from training.model_setup import load_model, load_tokenizer, peft_config, sft_config
from training.progress import (DATASET_FILE, PROGRESS_FILE, RESULT_FILE, ProgressWriter, read_json, read_progress,
                               write_json)
from training.spec import TrainingSpec
from training.truncation import fit_job

log = logging.getLogger("training")

EXIT_COMPLETED = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_STOPPED = 143  # what a shell reports for SIGTERM, which is how Stop asks


class StopRequested(Exception):
    """Stop was asked for outside the training loop, where there is nothing to checkpoint."""


class _StopFlag:
    requested = False
    in_loop = False


_stop = _StopFlag()


def _on_signal(signum: int, frame: Any) -> None:
    _stop.requested = True
    # Inside the loop the callback checkpoints and ends at the next step; elsewhere stop now.
    if not _stop.in_loop:
        raise StopRequested()


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def cpu_threads() -> int:
    """Threads for CPU training: CHATBOT_TRAIN_THREADS, else half the cores (the app keeps the rest)."""
    configured = os.environ.get("CHATBOT_TRAIN_THREADS", "").strip()
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    # Measured on 2 busy cores: one thread ran a tiny model's step 8x faster than two fighting the app.
    return max(1, (os.cpu_count() or 2) // 2)


def memory_now(cuda: bool) -> dict[str, float | None]:
    """GPU memory allocated (and its peak) on CUDA; the process's peak resident memory everywhere."""
    out: dict[str, float | None] = {"gpu_memory_mb": None, "gpu_peak_mb": None}
    if cuda:
        import torch

        out["gpu_memory_mb"] = round(torch.cuda.memory_allocated() / 2**20, 1)
        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    # ru_maxrss is in kilobytes on Linux.
    out["rss_peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _progress_callback(writer: ProgressWriter, cuda: bool):
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Writes step, loss, learning rate, tokens/s, memory and ETA lines; honours Stop."""

        def __init__(self) -> None:
            self.start_time = time.time()
            self.start_step = 0
            self.last_time = self.start_time
            self.last_tokens = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start_time = self.last_time = time.time()
            self.start_step = state.global_step
            self.last_tokens = state.num_input_tokens_seen
            writer.write("train_begin", step=state.global_step, total=state.max_steps, epochs=args.num_train_epochs)
            _stop.in_loop = True

        def on_step_end(self, args, state, control, **kwargs):
            if _stop.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            now = time.time()
            done = state.global_step - self.start_step
            eta = (now - self.start_time) / done * (state.max_steps - state.global_step) if done > 0 else None
            if "eval_loss" in logs:
                writer.write("eval", step=state.global_step, total=state.max_steps, eval_loss=logs["eval_loss"])
                return
            if "loss" not in logs:
                return
            tokens = state.num_input_tokens_seen
            rate = (tokens - self.last_tokens) / (now - self.last_time) if now > self.last_time else None
            self.last_time, self.last_tokens = now, tokens
            writer.write("log", step=state.global_step, total=state.max_steps, epoch=round(state.epoch or 0, 3),
                         loss=logs["loss"], learning_rate=logs.get("learning_rate"),
                         grad_norm=logs.get("grad_norm"), tokens_per_s=round(rate, 1) if rate else None,
                         tokens_seen=tokens, eta_s=round(eta, 1) if eta is not None else None,
                         elapsed_s=round(now - self.start_time, 2), **memory_now(cuda))

        def on_save(self, args, state, control, **kwargs):
            writer.write("checkpoint", step=state.global_step, path=f"checkpoint-{state.global_step}")

    return ProgressCallback()


def adapters_root(config_path: Path) -> Path:
    """Where finished adapters go: beside the jobs folder, else the data directory's."""
    job_dir = config_path.resolve().parent
    if job_dir.parent.name == "jobs" and job_dir.parent.parent.name == "training":
        return job_dir.parent.parent / "adapters"
    from common.settings import Settings

    return Path(Settings.load().data_dir) / "training" / "adapters"


def _resolve(path: str, job_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else job_dir / p


def _previous_train_seconds(events: list[dict[str, Any]]) -> float:
    return sum(e.get("train_seconds") or 0.0 for e in events if e.get("event") == "segment")


def run(config_path: str | Path, resume: bool = False, adapters_dir: str | Path | None = None) -> int:
    """Run one job to the end; returns the process exit code and leaves result.json behind.

    The adapter is saved under `adapters_dir` (default: beside the jobs folder, else the data directory's).
    """
    from backends.bundled import is_bundled, resolve_model_path

    config_path = Path(config_path)
    job_dir = config_path.resolve().parent
    writer = ProgressWriter(job_dir / PROGRESS_FILE)
    started = time.time()
    result: dict[str, Any] = {"job_id": job_dir.name, "state": "failed", "exit_code": EXIT_FAILED}
    cuda = False
    prior = _previous_train_seconds(read_progress(job_dir / PROGRESS_FILE))
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        spec = TrainingSpec.load(config_path)
        writer.write("start", resume=resume, pid=os.getpid(), method=spec.method, base_model=spec.base_model)
        # torch, transformers, peft and trl take seconds to import: say so rather than look stuck.
        writer.write("phase", phase="loading the training libraries")
        import trl  # noqa: F401

        cuda = cuda_available()
        spec.validate(cuda)
        if is_bundled(spec.base_model):
            writer.write("phase", phase="preparing the bundled model")
            spec.base_model = resolve_model_path(spec.base_model, progress=lambda m: writer.write("phase", phase=m))
        train, evals = _read_sets(spec, job_dir)
        checkpoint = _resume_point(job_dir / "checkpoints") if resume else None
        log.info("device=%s method=%s base=%s train=%d eval=%d resume=%s", "cuda" if cuda else "cpu",
                 spec.method, spec.base_model, len(train), len(evals), checkpoint or "no")
        root = Path(adapters_dir) if adapters_dir else adapters_root(config_path)
        result = _train(spec, job_dir, train, evals, cuda, checkpoint, writer, prior, root)
    except StopRequested:
        result.update(state="stopped", exit_code=EXIT_STOPPED, error="Stopped before training began.")
    except (ChatbotError, ValueError) as exc:
        # Settings or data the job cannot use; transformers and peft report bad combinations (an unknown
        # target module, say) as ValueError.
        log.error("%s", exc)
        result.update(state="failed", exit_code=EXIT_INVALID, error=str(exc))
    except Exception as exc:  # the job's last word: record any crash for the page, then exit non-zero
        log.exception("training failed")
        message = str(exc)
        if "out of memory" in message.lower():
            message = f"Out of memory: {message}. Lower the batch size or the sequence length, or use QLoRA."
        result.update(state="failed", exit_code=EXIT_FAILED, error=f"{type(exc).__name__}: {message}")
    finally:
        _stop.in_loop = False
    return _finish(job_dir, writer, result, started)


def _read_sets(spec: TrainingSpec, job_dir: Path) -> tuple[list, list]:
    """The job's training and evaluation examples; DatasetError when there is nothing to train on."""
    from training.datasets import read_examples

    train = read_examples(_resolve(spec.train_file, job_dir))
    evals = read_examples(_resolve(spec.eval_file, job_dir)) if spec.eval_file.strip() else []
    if not train:
        raise DatasetError(f"{spec.train_file}: no training examples")
    return train, evals


def _resume_point(output_dir: Path) -> str:
    """The last checkpoint of the job, to resume from; TrainingJobError when there is none yet."""
    from transformers.trainer_utils import get_last_checkpoint

    checkpoint = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if checkpoint is None:
        raise TrainingJobError("No checkpoint to resume from yet: start the job again instead.")
    return checkpoint


def _finish(job_dir: Path, writer: ProgressWriter, result: dict[str, Any], started: float) -> int:
    """Leave result.json and the progress file's last event behind; the process exit code."""
    result["finished_at"] = time.time()
    result["run_seconds"] = round(time.time() - started, 2)
    log.info("job %s %s (exit code %s)%s", job_dir.name, result["state"], result["exit_code"],
             f": adapter in {result['adapter_dir']}" if result.get("adapter_dir") else "")
    write_json(job_dir / RESULT_FILE, result)
    writer.write("end", state=result["state"], exit_code=result["exit_code"], error=result.get("error"))
    return int(result["exit_code"])


def _train(spec: TrainingSpec, job_dir: Path, train: list, evals: list, cuda: bool, checkpoint: str | None,
           writer: ProgressWriter, prior_seconds: float, adapters_dir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTTrainer

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        torch.set_num_threads(cpu_threads())
    writer.write("phase", phase="loading the model")
    tokenizer = load_tokenizer(spec.base_model)
    # trl would drop an example that keeps no reply token after truncation without a word: leave it out
    # here and count it, so the metrics say what was trained on.
    train, evals, data = _fit_data(spec, job_dir, train, evals, tokenizer, writer)
    model = load_model(spec, cuda)
    compare = evals[: spec.compare_prompts]
    trainer = SFTTrainer(
        model=model, args=sft_config(spec, job_dir / "checkpoints", cuda, bool(evals)),
        train_dataset=Dataset.from_list(train), eval_dataset=Dataset.from_list(evals) if evals else None,
        processing_class=tokenizer, peft_config=peft_config(spec, model), callbacks=[_progress_callback(writer, cuda)],
    )
    trainable, total = trainer.model.get_nb_trainable_parameters()
    writer.write("model", trainable_params=trainable, total_params=total, device="cuda" if cuda else "cpu",
                 optim=trainer.args.optim, planned_steps=spec.planned_steps(len(train)))
    base_eval = None
    if evals and checkpoint is None:
        # A fresh LoRA/DoRA update is zero, so this is the base model's loss: the "before" of the comparison.
        writer.write("phase", phase="evaluating the base model")
        base_eval = trainer.evaluate()["eval_loss"]
    writer.write("phase", phase="training")
    segment_start = time.time()
    output = trainer.train(resume_from_checkpoint=checkpoint)
    _stop.in_loop = False
    train_seconds = time.time() - segment_start
    writer.write("segment", train_seconds=round(train_seconds, 2), step=trainer.state.global_step)
    if _stop.requested:
        return {"job_id": job_dir.name, "state": "stopped", "exit_code": EXIT_STOPPED,
                "step": trainer.state.global_step, "error": "Stopped; resume continues from the last checkpoint."}

    writer.write("phase", phase="final evaluation")
    metrics = _metrics(spec, trainer, output, prior_seconds + train_seconds, base_eval, len(train), len(evals), data,
                       cuda)
    adapter_dir, saved = _save_adapter(spec, job_dir, trainer, tokenizer, adapters_dir, writer)
    metrics.update(job_id=job_dir.name, base_model=saved["base_model"], finished_at=time.time())
    write_json(adapter_dir / "metrics.json", metrics)
    if compare:
        _compare(spec, trainer, tokenizer, compare, adapter_dir, metrics, writer)
    writer.write("metrics", **{k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None})
    return {"job_id": job_dir.name, "state": "completed", "exit_code": EXIT_COMPLETED, "adapter_dir": str(adapter_dir),
            "step": trainer.state.global_step, "metrics": metrics}


def _fit_data(spec: TrainingSpec, job_dir: Path, train: list, evals: list, tokenizer: Any,
              writer: ProgressWriter) -> tuple[list, list, dict[str, Any]]:
    """The examples that fit the max sequence length, and what was left out (written as the "data" event)."""
    left_before = (read_json(job_dir / DATASET_FILE) or {}).get("left_out_for_length", 0)
    train, evals, data = fit_job(train, evals, tokenizer, spec.max_seq_length, left_before)
    writer.write("data", **data)
    if data["examples_left_out_for_length"] or data["eval_examples_left_out_for_length"]:
        log.warning("left out for length (over %d tokens): %d training and %d evaluation example(s)",
                    spec.max_seq_length, data["examples_left_out_for_length"],
                    data["eval_examples_left_out_for_length"])
    return train, evals, data


def _metrics(spec: TrainingSpec, trainer: Any, output: Any, seconds: float, base_eval: float | None,
             train_count: int, eval_count: int, data: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """The finished job's metrics: losses (evaluating once more unless the loop just did), speed, size, memory."""
    trainable, total = trainer.model.get_nb_trainable_parameters()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    last_eval = next((h for h in reversed(trainer.state.log_history) if "eval_loss" in h), None)
    if last_eval is not None and last_eval.get("step") == trainer.state.global_step:
        eval_loss = last_eval["eval_loss"]  # the loop has just evaluated this very step
    else:
        # evaluate() logs through the progress callback, so the final point reaches the chart by itself.
        eval_loss = trainer.evaluate()["eval_loss"] if eval_count else None
    metrics = {
        "method": spec.method, "base_model": spec.base_model, "device": "cuda" if cuda else "cpu",
        "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 3),
        "train_loss": losses[-1] if losses else output.training_loss,
        "train_loss_mean": output.training_loss, "eval_loss": eval_loss,
        "perplexity": math.exp(min(eval_loss, 50)) if eval_loss is not None else None,
        "eval_loss_base": base_eval, "perplexity_base": math.exp(min(base_eval, 50)) if base_eval is not None else None,
        "duration_s": round(seconds, 2),
        "tokens_per_s": round(trainer.state.num_input_tokens_seen / seconds, 1) if seconds else None,
        "trainable_params": trainable, "total_params": total,
        "trainable_share": trainable / total if total else None,
        "train_examples": train_count, "eval_examples": eval_count, **data,
        "input_tokens_seen": trainer.state.num_input_tokens_seen, **memory_now(cuda),
    }
    metrics["peak_memory_mb"] = metrics["gpu_peak_mb"] if cuda else metrics["rss_peak_mb"]
    return metrics


def _save_adapter(spec: TrainingSpec, job_dir: Path, trainer: Any, tokenizer: Any, adapters_dir: Path,
                  writer: ProgressWriter) -> tuple[Path, dict[str, Any]]:
    """Save the adapter, its tokenizer and its spec (base model as an absolute path); (its folder, the spec)."""
    adapter_dir = adapters_dir / (spec.adapter_name or job_dir.name)
    writer.write("phase", phase="saving the adapter", path=str(adapter_dir))
    adapter_dir.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    saved = spec.to_dict()
    if Path(spec.base_model).is_dir():
        # The adapter must find its base again from any working directory.
        saved["base_model"] = str(Path(spec.base_model).resolve())
    TrainingSpec.from_dict(saved).save(adapter_dir / "spec.yaml")
    return adapter_dir, saved


def _compare(spec: TrainingSpec, trainer: Any, tokenizer: Any, compare: list, adapter_dir: Path,
             metrics: dict[str, Any], writer: ProgressWriter) -> None:
    """Answer held-out prompts with the base model and the adapter; their scores join the metrics."""
    from training.evaluation import compare_replies

    writer.write("phase", phase="comparing base and adapter replies", prompts=len(compare))
    model = trainer.model
    model.eval()
    model.config.use_cache = True
    comparison = compare_replies(
        model, tokenizer, compare, spec.compare_max_new_tokens,
        on_prompt=lambda i, n: writer.write("compare", done=i, total=n),
    )
    write_json(adapter_dir / "comparison.json", comparison)
    metrics.update(comparison["summary"])
    write_json(adapter_dir / "metrics.json", metrics)


def configure_logging() -> None:
    """Plain timestamped lines on stdout, which the job manager sends to train.log."""
    # Library deprecation notices say nothing about this job; keep them out of its log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_warning()
    import datasets

    datasets.disable_progress_bars()
