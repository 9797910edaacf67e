"""Training arguments: one dataclass whose fields carry help text, validated in one place."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from common.errors import ConfigurationError

METHODS = ("qlora", "lora", "dora", "ia3")
METHOD_LABELS = {
    "qlora": "QLoRA (LoRA on a 4-bit NF4 base, needs CUDA)",
    "lora": "LoRA",
    "dora": "DoRA (weight-decomposed LoRA)",
    "ia3": "IA3 (learned scaling vectors)",
}
DEVICES = ("auto", "cuda", "cpu")
COMPUTE_DTYPES = ("bfloat16", "float16", "float32")
QUANT_TYPES = ("nf4", "fp4")
SCHEDULERS = ("cosine", "linear", "constant_with_warmup", "constant")
OPTIMIZERS = ("auto", "paged_adamw_8bit", "paged_adamw_32bit", "adamw_torch", "adamw_8bit")
ALL_LINEAR = "all-linear"
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _f(default: Any, help: str, group: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class TrainingSpec:
    """Everything one fine-tuning job needs; defaults follow the QLoRA paper's recipe."""

    # Model
    base_model: str = _f("", "Local folder of a causal LM, or a hub id already in the local cache.", "model")
    method: str = _f("qlora", "qlora: LoRA on a 4-bit base (CUDA only); lora, dora, ia3: on a full-precision base.",
                     "model", choices=METHODS)
    device: str = _f("auto", "auto picks CUDA when present, else the CPU.", "model", choices=DEVICES)
    # Adapter
    lora_r: int = _f(16, "LoRA rank: the width of the low-rank update; more is more capacity and memory.", "adapter")
    lora_alpha: int = _f(32, "LoRA scaling numerator; the update is scaled by alpha / r.", "adapter")
    lora_dropout: float = _f(0.05, "Dropout on the adapter's input during training.", "adapter")
    target_modules: str = _f(ALL_LINEAR, "Modules to adapt: 'all-linear' (every linear projection but the output "
                             "head) or a comma-separated list such as q_proj,v_proj.", "adapter")
    # Quantisation
    load_in_4bit: bool = _f(False, "Load the frozen base in 4 bits (always on for QLoRA; CUDA only).", "quantisation")
    bnb_4bit_quant_type: str = _f("nf4", "4-bit data type: NF4 (normal float, the QLoRA paper's) or FP4.",
                                  "quantisation", choices=QUANT_TYPES)
    bnb_4bit_use_double_quant: bool = _f(True, "Quantise the quantisation constants too (about 0.4 bit/param saved).",
                                         "quantisation")
    bnb_4bit_compute_dtype: str = _f("bfloat16", "Precision of the matrix products on the 4-bit weights.",
                                     "quantisation", choices=COMPUTE_DTYPES)
    # Optimisation
    learning_rate: float = _f(2e-4, "Peak learning rate after warm-up.", "optimisation")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule after warm-up.", "optimisation", choices=SCHEDULERS)
    warmup_ratio: float = _f(0.03, "Share of the steps spent warming the learning rate up from zero.", "optimisation")
    num_train_epochs: float = _f(3.0, "Passes over the training set (ignored when max steps is set).", "optimisation")
    max_steps: int = _f(-1, "Stop after this many optimiser steps; -1 trains for the epochs above.", "optimisation")
    max_seq_length: int = _f(1024, "Longest example in tokens; longer ones are truncated at the end.", "optimisation")
    per_device_train_batch_size: int = _f(4, "Examples per forward pass.", "optimisation")
    gradient_accumulation_steps: int = _f(4, "Forward passes per optimiser step (effective batch = batch x this).",
                                          "optimisation")
    gradient_checkpointing: bool = _f(True, "Recompute activations in the backward pass: less memory, ~20% slower.",
                                      "optimisation")
    max_grad_norm: float = _f(0.3, "Gradient clipping norm (0.3 in the QLoRA paper).", "optimisation")
    weight_decay: float = _f(0.0, "AdamW weight decay on the adapter weights.", "optimisation")
    optim: str = _f("auto", "Optimiser; auto: paged 8-bit AdamW for 4-bit bases on CUDA, else AdamW.",
                    "optimisation", choices=OPTIMIZERS)
    seed: int = _f(42, "Random seed for the adapter's initialisation and the data order.", "optimisation")
    # Intervals
    logging_steps: int = _f(5, "Write a progress line every this many steps.", "intervals")
    eval_steps: int = _f(50, "Evaluate on the validation split every this many steps (0: only at the end).",
                         "intervals")
    save_steps: int = _f(100, "Save a resumable checkpoint every this many steps.", "intervals")
    save_total_limit: int = _f(2, "Checkpoints kept on disk; older ones are deleted.", "intervals")
    # Data and outputs
    train_file: str = _f("train.jsonl", "Training examples (JSON lines of prompt/completion messages); relative "
                         "paths are inside the job folder.", "data")
    eval_file: str = _f("eval.jsonl", "Validation examples, same format; empty for none.", "data")
    adapter_name: str = _f("", "Name of the saved adapter folder; empty uses the job id.", "data")
    compare_prompts: int = _f(8, "Held-out prompts answered by the base model and by the adapter after training.",
                              "data")
    compare_max_new_tokens: int = _f(96, "Longest reply generated for that comparison.", "data")

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainingSpec":
        """Build from a mapping (a parsed job.yaml); unknown keys are an error that names them."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigurationError(f"Unknown training setting(s): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = type(known[name].default)
            try:
                values[name] = _coerce(value, kind)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name} must be a {kind.__name__}, got {value!r}") from exc
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainingSpec":
        """Read a YAML job file."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise ConfigurationError(f"Job file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigurationError(f"{path} must hold a mapping of training settings")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in field order."""
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the spec as YAML."""
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path

    # ---- derived values -----------------------------------------------------------------------

    @property
    def quantized(self) -> bool:
        """Whether the frozen base is loaded in 4 bits."""
        return self.method == "qlora" or self.load_in_4bit

    def target_module_list(self) -> str | list[str]:
        """peft's target_modules value: the 'all-linear' shorthand or a list of names."""
        text = self.target_modules.strip()
        if text.lower() == ALL_LINEAR:
            return ALL_LINEAR
        return [name.strip() for name in text.split(",") if name.strip()]

    def resolved_device(self, cuda_available: bool) -> str:
        """cuda or cpu."""
        if self.device == "auto":
            return "cuda" if cuda_available else "cpu"
        return self.device

    def resolved_optim(self, cuda_available: bool) -> str:
        """The optimiser name handed to transformers."""
        if self.optim != "auto":
            return self.optim
        if self.quantized and self.resolved_device(cuda_available) == "cuda":
            return "paged_adamw_8bit"
        return "adamw_torch"

    def effective_batch_size(self) -> int:
        """Examples per optimiser step."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    def planned_steps(self, n_train_examples: int) -> int:
        """Optimiser steps the job will run for a training set of this size."""
        if self.max_steps > 0:
            return self.max_steps
        per_epoch = max(1, math.ceil(n_train_examples / self.per_device_train_batch_size))
        per_epoch = max(1, math.ceil(per_epoch / self.gradient_accumulation_steps))
        return max(1, math.ceil(per_epoch * self.num_train_epochs))

    # ---- validation ---------------------------------------------------------------------------

    def problems(self, cuda_available: bool) -> list[str]:
        """Every problem with these settings, as sentences a person can act on."""
        out: list[str] = []
        if not self.base_model.strip():
            out.append("Choose a base model: a local folder or a hub id in the local cache.")
        for name, choices in (("method", METHODS), ("device", DEVICES), ("optim", OPTIMIZERS),
                              ("bnb_4bit_quant_type", QUANT_TYPES), ("bnb_4bit_compute_dtype", COMPUTE_DTYPES),
                              ("lr_scheduler_type", SCHEDULERS)):
            if getattr(self, name) not in choices:
                out.append(f"{name} must be one of {', '.join(choices)} (got {getattr(self, name)!r}).")
        device = self.resolved_device(cuda_available) if self.device in DEVICES else "cpu"
        if self.device == "cuda" and not cuda_available:
            out.append("device is cuda but no CUDA GPU was found; choose auto or cpu.")
        if self.quantized and device != "cuda":
            what = "QLoRA" if self.method == "qlora" else "4-bit loading"
            out.append(f"{what} needs a CUDA GPU and none is available here: choose LoRA (or DoRA, IA3) "
                       "to train on the CPU.")
        if self.optim.startswith("paged_") and device != "cuda":
            out.append(f"The {self.optim} optimiser needs CUDA; choose adamw_torch or auto.")
        if self.method != "ia3":
            if self.lora_r < 1:
                out.append("LoRA rank must be at least 1.")
            if self.lora_alpha < 1:
                out.append("LoRA alpha must be at least 1.")
            if not 0.0 <= self.lora_dropout < 1.0:
                out.append("LoRA dropout must be in [0, 1).")
        targets = self.target_module_list()
        if isinstance(targets, list):
            bad = [t for t in targets if not _MODULE_NAME.match(t)]
            if not targets:
                out.append("Name at least one target module, or use all-linear.")
            elif bad:
                out.append(f"Target module names look wrong: {', '.join(bad)}.")
        if not 0.0 < self.learning_rate <= 1.0:
            out.append("Learning rate must be in (0, 1]; 2e-4 is the usual choice for LoRA.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            out.append("Warm-up ratio must be in [0, 1).")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            out.append("Set a number of epochs above 0, or max steps.")
        if self.max_steps == 0 or self.max_steps < -1:
            out.append("Max steps must be -1 (use epochs) or at least 1.")
        if self.max_seq_length < 16:
            out.append("Sequence length must be at least 16 tokens.")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps",
                     "save_steps", "save_total_limit"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1.")
        if self.eval_steps < 0:
            out.append("eval_steps must be 0 (only at the end) or more.")
        if self.max_grad_norm < 0 or self.weight_decay < 0:
            out.append("Gradient clipping and weight decay cannot be negative.")
        if self.compare_prompts < 0 or self.compare_max_new_tokens < 1:
            out.append("The comparison needs 0 or more prompts and at least 1 new token.")
        if not self.train_file.strip():
            out.append("A training file is required.")
        if self.adapter_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}", self.adapter_name):
            out.append("Adapter name: letters, digits, '.', '_' and '-' only (up to 80).")
        return out

    def validate(self, cuda_available: bool) -> "TrainingSpec":
        """Return self, or raise ConfigurationError listing every problem."""
        found = self.problems(cuda_available)
        if found:
            raise ConfigurationError("Training settings need attention: " + " ".join(found))
        return self


def default_method(cuda_available: bool) -> str:
    """QLoRA where there is a CUDA GPU, plain LoRA on the CPU."""
    return "qlora" if cuda_available else "lora"


def field_help(name: str) -> str:
    """The help text of one spec field."""
    for f in fields(TrainingSpec):
        if f.name == name:
            return f.metadata["help"]
    raise KeyError(name)


def field_choices(name: str) -> tuple[str, ...]:
    """The allowed values of a choice field."""
    for f in fields(TrainingSpec):
        if f.name == name:
            return tuple(f.metadata.get("choices", ()))
    raise KeyError(name)


def _coerce(value: Any, kind: type) -> Any:
    if value is None:
        raise TypeError("missing value")
    if kind is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        return bool(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return int(value)
    if kind is float:
        return float(value)
    return str(value)


def ia3_modules(linear_names: list[str], targets: str | list[str], model_type: str) -> tuple[list[str], list[str]]:
    """IA3's (target modules, feed-forward subset) for a model's linear layers, as peft needs them.

    peft requires the feed-forward list to be a subset of the target list as written, which its own
    'all-linear' expansion breaks; full module paths on both sides always satisfy it.
    """
    try:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD
    except ImportError:  # an older or newer peft without the table: the common names below cover most models
        FEEDFORWARD = {}
    suffixes = FEEDFORWARD.get(model_type) or ["down_proj", "fc2", "w2"]

    chosen = list(linear_names) if targets == ALL_LINEAR else list(targets)
    feedforward = [name for name in chosen if any(name == s or name.endswith("." + s) for s in suffixes)]
    return chosen, feedforward
