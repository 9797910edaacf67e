"""Model set-up for a fine-tuning job: the base model and tokenizer, the adapter config and trl's SFTConfig."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common.errors import ConfigurationError
from training.spec import TrainingSpec

log = logging.getLogger("training")


def load_model(spec: TrainingSpec, cuda: bool):
    """The frozen base model: 4-bit NF4 for QLoRA on CUDA, full precision otherwise."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {}
    if spec.quantized:
        compute = getattr(torch, spec.bnb_4bit_compute_dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=spec.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=spec.bnb_4bit_use_double_quant, bnb_4bit_compute_dtype=compute,
        )
        kwargs["dtype"] = compute
    elif cuda:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    if cuda:
        # One process, one GPU: put every layer on it (device_map="auto" would spill to the CPU).
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    try:
        model = AutoModelForCausalLM.from_pretrained(spec.base_model, **kwargs)
    except OSError as exc:
        raise ConfigurationError(f"Cannot load the base model {spec.base_model!r}: {exc}. Use a local folder or a "
                                 "hub id already in the local cache (no download happens here).") from exc
    if spec.quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=spec.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return model


def load_tokenizer(base_model: str):
    """The base model's tokenizer, with a pad token and a chat template."""
    from transformers import AutoTokenizer

    from backends.bundled import resolve_model_path
    from backends.local import ensure_chat_template

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(base_model))
    except OSError as exc:
        raise ConfigurationError(f"Cannot load the tokenizer of {base_model!r}: {exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if ensure_chat_template(tokenizer):
        log.warning("the base model has no chat template; using a plain role-tagged one")
    return tokenizer


def linear_module_names(model) -> list[str]:
    """Full paths of a model's linear layers, the output head left out (what 'all-linear' means)."""
    import torch

    output = model.get_output_embeddings()
    return [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not output]


def peft_config(spec: TrainingSpec, model=None):
    """The adapter configuration for the chosen method (IA3 needs the model to place its vectors)."""
    from peft import IA3Config, LoraConfig

    from training.spec import ia3_modules

    targets = spec.target_module_list()
    if spec.method == "ia3":
        if model is None:
            raise ValueError("IA3 needs the model to resolve its target modules")
        targets, feedforward = ia3_modules(linear_module_names(model), targets,
                                           getattr(model.config, "model_type", ""))
        return IA3Config(target_modules=targets, feedforward_modules=feedforward, task_type="CAUSAL_LM")
    return LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM", use_dora=spec.method == "dora")


def sft_config(spec: TrainingSpec, output_dir: Path, cuda: bool, has_eval: bool):
    """trl's SFTConfig from the spec: the one place training arguments reach transformers."""
    import torch
    from trl import SFTConfig

    bf16 = cuda and torch.cuda.is_bf16_supported()
    evaluate_during = has_eval and spec.eval_steps > 0
    return SFTConfig(
        output_dir=str(output_dir), seed=spec.seed, data_seed=spec.seed,
        learning_rate=spec.learning_rate, lr_scheduler_type=spec.lr_scheduler_type, warmup_steps=spec.warmup_ratio,
        num_train_epochs=spec.num_train_epochs, max_steps=spec.max_steps,
        per_device_train_batch_size=spec.per_device_train_batch_size,
        per_device_eval_batch_size=spec.per_device_train_batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation_steps,
        # transformers 5 renamed gradient checkpointing; None on the old name keeps trl's default out of the way.
        gradient_checkpointing=None, activation_checkpointing=spec.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        max_grad_norm=spec.max_grad_norm, weight_decay=spec.weight_decay, optim=spec.resolved_optim(cuda),
        max_length=spec.max_seq_length, packing=False,
        logging_strategy="steps", logging_steps=spec.logging_steps, logging_first_step=True,
        eval_strategy="steps" if evaluate_during else "no", eval_steps=spec.eval_steps if evaluate_during else None,
        save_strategy="steps", save_steps=spec.save_steps, save_total_limit=spec.save_total_limit,
        bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda,
        include_num_input_tokens_seen="non_padding", report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=True,
    )
