"""Saved adapters: listing, the comparison table of runs, and merging into a standalone model."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import ChatbotError, ConfigurationError, TrainingJobError
from training.progress import PROGRESS_FILE, RESULT_FILE, ProgressWriter, read_json, write_json

log = logging.getLogger("training")


@dataclass
class AdapterInfo:
    """One saved adapter: where it is, its base model, its settings, metrics and comparison."""

    name: str
    path: Path
    base_model: str
    method: str
    metrics: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None


def load_adapter_info(path: str | Path) -> AdapterInfo:
    """Read one adapter folder written by a finished job."""
    path = Path(path)
    config = read_json(path / "adapter_config.json")
    if config is None:
        raise TrainingJobError(f"{path} is not an adapter folder (no adapter_config.json)")
    try:
        spec = yaml.safe_load((path / "spec.yaml").read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        spec = {}
    metrics = read_json(path / "metrics.json") or {}
    base = spec.get("base_model") or metrics.get("base_model") or config.get("base_model_name_or_path") or ""
    method = spec.get("method") or metrics.get("method") or str(config.get("peft_type", "")).lower()
    return AdapterInfo(name=path.name, path=path, base_model=base, method=method, metrics=metrics, spec=spec,
                       comparison=read_json(path / "comparison.json"))


def list_adapters(adapters_dir: str | Path) -> list[AdapterInfo]:
    """Every adapter under the folder, newest first."""
    root = Path(adapters_dir)
    if not root.is_dir():
        return []
    found = [load_adapter_info(p) for p in root.iterdir() if (p / "adapter_config.json").is_file()]
    return sorted(found, key=lambda a: a.metrics.get("finished_at") or 0, reverse=True)


def runs_table(adapters: list[AdapterInfo]) -> list[dict[str, Any]]:
    """One row per adapter with the numbers that decide which run is best."""
    rows = []
    for a in adapters:
        m = a.metrics
        rows.append({
            "adapter": a.name, "method": a.method, "base model": Path(a.base_model).name or a.base_model,
            "trainable params": m.get("trainable_params"),
            "trainable %": round(100 * m["trainable_share"], 3) if m.get("trainable_share") else None,
            "train loss": _round(m.get("train_loss")), "eval loss": _round(m.get("eval_loss")),
            "perplexity": _round(m.get("perplexity"), 2),
            "ROUGE-L base": _round(m.get("rouge_l_base")), "ROUGE-L adapter": _round(m.get("rouge_l_adapter")),
            "similarity adapter": _round(m.get("similarity_adapter")),
            "peak memory MB": _round(m.get("peak_memory_mb"), 0), "time s": _round(m.get("duration_s"), 1),
            "steps": m.get("steps"), "examples": m.get("examples_used", m.get("train_examples")),
            "left out for length": m.get("examples_left_out_for_length"), "tokens trained": m.get("tokens_trained"),
        })
    return rows


def best_adapter(adapters: list[AdapterInfo]) -> AdapterInfo | None:
    """The run with the lowest eval loss (runs without one come last)."""
    scored = [a for a in adapters if a.metrics.get("eval_loss") is not None]
    return min(scored, key=lambda a: a.metrics["eval_loss"]) if scored else None


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, (int, float)) else value


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, writer: ProgressWriter | None = None) -> Path:
    """Load the base in full precision, fold the adapter into it and save a standalone model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = load_adapter_info(adapter_dir)
    output_dir = Path(output_dir)
    note = writer.write if writer else (lambda *a, **k: None)
    if output_dir.exists() and any(output_dir.iterdir()):
        raise TrainingJobError(f"{output_dir} already exists and is not empty; choose another folder.")
    cuda = torch.cuda.is_available()
    # Merging into 4-bit weights would round the update away: the base is loaded in 16 or 32 bits.
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
    note("phase", phase="loading the base model", step=1, total=4)
    try:
        base = AutoModelForCausalLM.from_pretrained(info.base_model, dtype=dtype)
    except OSError as exc:
        raise ConfigurationError(f"Cannot load the base model {info.base_model!r}: {exc}") from exc
    note("phase", phase="applying the adapter", step=2, total=4)
    model = PeftModel.from_pretrained(base, str(info.path))
    note("phase", phase="merging", step=3, total=4)
    merged = model.merge_and_unload()
    note("phase", phase="writing the merged model", step=4, total=4)
    tmp = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(str(tmp))
        AutoTokenizer.from_pretrained(str(info.path)).save_pretrained(str(tmp))
        write_json(tmp / "merged_from.json", {"adapter": str(info.path), "base_model": info.base_model,
                                              "method": info.method, "merged_at": time.time()})
    except BaseException:
        # A stopped or failed export leaves no half-written model behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if output_dir.exists():
        output_dir.rmdir()
    tmp.rename(output_dir)
    return output_dir


def run_merge_job(config_path: str | Path) -> int:
    """The merge process behind `python -m chatbot merge-adapter --config job.yaml`."""
    import signal

    config_path = Path(config_path)
    job_dir = config_path.resolve().parent
    writer = ProgressWriter(job_dir / PROGRESS_FILE)
    result: dict[str, Any] = {"job_id": job_dir.name}

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        job = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        writer.write("start", adapter=job["adapter_dir"], output=job["output_dir"])
        path = merge_adapter(job["adapter_dir"], job["output_dir"], writer)
        result.update(state="completed", exit_code=0, output_dir=str(path))
    except KeyboardInterrupt:
        result.update(state="stopped", exit_code=143, error="Export stopped; nothing was written.")
    except (ChatbotError, OSError, KeyError, ValueError) as exc:
        log.error("%s", exc)
        result.update(state="failed", exit_code=1, error=str(exc))
    result["finished_at"] = time.time()
    write_json(job_dir / RESULT_FILE, result)
    writer.write("end", state=result["state"], exit_code=result["exit_code"], error=result.get("error"))
    return int(result["exit_code"])
