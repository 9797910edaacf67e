"""Before launching: trainable parameters and a memory estimate for a model and settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from common.errors import ConfigurationError
from training.spec import TrainingSpec

GIB = 2**30
# Rough allowance for the CUDA context, kernels and allocator fragmentation.
CUDA_OVERHEAD = 0.75 * GIB
# NF4 stores 4 bits a weight plus one fp32 scale per 64 weights; double quantisation stores those scales in
# 8 bits with an fp32 scale per 256 of them (the QLoRA paper's 0.5 -> 0.127 bits).
NF4_BITS = {True: 4 + 8 / 64 + 32 / (64 * 256), False: 4 + 32 / 64}
# Models beyond this many parameters are too slow to fine-tune on a CPU to be worth trying.
CPU_PARAM_LIMIT = 1_500_000_000
# Share of a plain matrix product's speed a training step reaches: the rest goes to attention, norms,
# activations, the loss over the vocabulary, the optimiser and Python. Measured on SmolLM2-135M with LoRA
# on a 2-core CPU (see BENCHMARKS.md): 0.4.
STEP_EFFICIENCY = 0.4


@dataclass
class ModelShape:
    """What the estimate needs to know about a model, read from its config on the meta device."""

    total_params: int
    linear: list[tuple[str, int, int]]  # (module name, in_features, out_features) of every nn.Linear
    hidden: int
    layers: int
    heads: int
    vocab: int
    model_type: str


@dataclass
class Estimate:
    """Trainable parameters, their share, and the memory a job needs, broken down."""

    trainable_params: int
    total_params: int
    adapted_modules: int
    memory_bytes: float
    breakdown: dict[str, float] = field(default_factory=dict)
    device: str = "cuda"
    warnings: list[str] = field(default_factory=list)
    tokens_per_step: int = 0
    flops_per_step: float = 0.0
    seconds_per_step: float | None = None

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB


@lru_cache(maxsize=16)
def model_shape(base_model: str) -> ModelShape:
    """Parameter counts and linear layers of a model, without loading its weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from backends.bundled import resolve_model_path

    try:
        config = AutoConfig.from_pretrained(resolve_model_path(base_model))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"Cannot read the configuration of {base_model!r}: {exc}") from exc
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    output = model.get_output_embeddings()
    linear = [(name, m.in_features, m.out_features) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and m is not output]
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelShape(
        total_params=sum(p.numel() for p in model.parameters()), linear=linear,
        hidden=int(getattr(text, "hidden_size", 0) or 0), layers=int(getattr(text, "num_hidden_layers", 0) or 0),
        heads=int(getattr(text, "num_attention_heads", 1) or 1), vocab=int(getattr(text, "vocab_size", 0) or 0),
        model_type=str(getattr(config, "model_type", "")),
    )


def _targeted(shape: ModelShape, spec: TrainingSpec) -> list[tuple[str, int, int]]:
    targets = spec.target_module_list()
    if targets == "all-linear":
        return shape.linear
    # peft matches a name when the module's dotted path ends with it.
    return [t for t in shape.linear if any(t[0] == n or t[0].endswith("." + n) for n in targets)]


def trainable_params(shape: ModelShape, spec: TrainingSpec) -> tuple[int, int]:
    """(trainable parameters, adapted modules) for the method and target modules."""
    modules = _targeted(shape, spec)
    if spec.method == "ia3":
        from training.spec import ia3_modules

        # One scaling vector per module: over the input for feed-forward layers, else over the output.
        _, feedforward = ia3_modules([name for name, _, _ in modules], [name for name, _, _ in modules],
                                     shape.model_type)
        return sum(i if name in feedforward else o for name, i, o in modules), len(modules)
    lora = sum(spec.lora_r * (i + o) for _, i, o in modules)
    if spec.method == "dora":
        lora += sum(o for _, _, o in modules)  # the magnitude vector
    return lora, len(modules)


def estimate(spec: TrainingSpec, cuda_available: bool, shape: ModelShape | None = None,
             tokens_per_example: float | None = None, flops_per_second: float | None = None) -> Estimate:
    """Trainable share, peak memory and time per step for training `spec.base_model` with these settings.

    `tokens_per_example`: the dataset's typical length (a batch is padded to its longest example), else
    max_seq_length; `flops_per_second`: the device's speed, else measured here.
    """
    shape = shape or model_shape(spec.base_model)
    device = spec.resolved_device(cuda_available) if spec.device in ("auto", "cuda", "cpu") else "cpu"
    trainable, adapted = trainable_params(shape, spec)
    linear_params = sum(i * o for _, i, o in shape.linear)
    other_params = max(0, shape.total_params - linear_params)
    half = 2 if device == "cuda" else 4  # bf16 on a GPU, fp32 on the CPU
    if spec.quantized:
        weights = linear_params * NF4_BITS[spec.bnb_4bit_use_double_quant] / 8 + other_params * 2
    else:
        weights = shape.total_params * half
    optim = spec.resolved_optim(cuda_available)
    state_bytes = 2 if "8bit" in optim else 8
    adapter = trainable * (4 + 4 + state_bytes)  # fp32 weights and gradients, two AdamW moments
    tokens = spec.per_device_train_batch_size * spec.max_seq_length
    # Per layer and token, a transformer block keeps about 34*h + 5*a*s activations (Korthikanti et al.);
    # with checkpointing only each layer's input stays and one layer is recomputed at a time.
    per_layer = tokens * (34 * shape.hidden + 5 * shape.heads * spec.max_seq_length) * half / 2
    if spec.gradient_checkpointing:
        activations = shape.layers * tokens * shape.hidden * half + per_layer
    else:
        activations = shape.layers * per_layer
    logits = tokens * shape.vocab * 4 * 2  # fp32 logits and their gradient
    breakdown = {"weights": weights, "adapter + optimiser": adapter, "activations": activations,
                 "logits": logits}
    if device == "cuda":
        breakdown["CUDA context"] = CUDA_OVERHEAD
    warnings = []
    if device == "cpu" and shape.total_params > CPU_PARAM_LIMIT:
        warnings.append(f"{shape.total_params / 1e9:.1f}B parameters is a lot for a CPU: expect hours per "
                        "epoch. A model under 1B, or a CUDA GPU, is the practical choice.")
    if adapted == 0:
        warnings.append("No module of this model matches the target modules; nothing would be trained.")
    tokens_per_step = spec.effective_batch_size() * min(spec.max_seq_length, tokens_per_example or spec.max_seq_length)
    flops = step_flops(shape, spec, tokens_per_step)
    speed = flops_per_second if flops_per_second is not None else measured_flops(device)
    return Estimate(trainable_params=trainable, total_params=shape.total_params + trainable,
                    adapted_modules=adapted, memory_bytes=sum(breakdown.values()), breakdown=breakdown,
                    device=device, warnings=warnings, tokens_per_step=tokens_per_step, flops_per_step=flops,
                    seconds_per_step=flops / (speed * STEP_EFFICIENCY) if speed else None)


def step_flops(shape: ModelShape, spec: TrainingSpec, tokens: int) -> float:
    """Floating-point operations of one optimiser step over `tokens` tokens.

    A forward pass costs 2 FLOPs per weight of every matrix product (the linear layers and the output head)
    and per token, plus attention's scores and weighted sum (4 * layers * hidden * sequence per token). The
    backward pass costs as much again for the activations' gradients, and again for the weights' gradients
    of whatever is trained: for an adapter that is a small share, for a full fine-tune all of it.
    Recomputing activations (checkpointing) adds one forward pass.
    """
    matmul = sum(i * o for _, i, o in shape.linear) + shape.vocab * shape.hidden
    forward = tokens * (2 * matmul + 4 * shape.layers * shape.hidden * spec.max_seq_length)
    passes = 2 + (1 if spec.gradient_checkpointing else 0)
    return forward * passes


@lru_cache(maxsize=4)
def measured_flops(device: str) -> float | None:
    """FLOP/s of a float32 matrix product the size of a small model's layer, timed here with the training
    threads (a busy machine measures slower, as its jobs will run). None where the device is not present."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        return None
    from training.trainer import cpu_threads

    threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
    try:
        dtype = torch.float32 if device == "cpu" else torch.bfloat16
        a = torch.randn(512, 1024, device=device, dtype=dtype)
        b = torch.randn(1024, 2048, device=device, dtype=dtype)
        best = float("inf")
        for _ in range(4):
            start = time.perf_counter()
            (a @ b).sum().item()
            best = min(best, time.perf_counter() - start)
        return 2 * 512 * 1024 * 2048 / best
    finally:
        torch.set_num_threads(threads)


def describe(est: Estimate) -> dict[str, Any]:
    """A flat summary for display."""
    return {
        "trainable parameters": f"{est.trainable_params:,}",
        "share of all parameters": f"{100 * est.trainable_share:.3f}%",
        "adapted modules": est.adapted_modules,
        ("GPU memory" if est.device == "cuda" else "RAM") + " (estimate)": f"{est.memory_gib:.2f} GiB",
        "time per step (estimate)": format_seconds(est.seconds_per_step),
    }


def format_seconds(seconds: float | None) -> str:
    """1.2 s, 14 s or 3.5 min; a dash when unknown."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
