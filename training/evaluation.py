"""Before/after comparison on held-out prompts: ROUGE-L and embedding similarity to the reference."""

from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from statistics import fmean
from typing import Any, Callable

log = logging.getLogger(__name__)
_WORD = re.compile(r"\w+", re.UNICODE)


def _lcs_length(a: list[str], b: list[str]) -> int:
    # One row of the dynamic-programming table at a time: memory is O(len(b)).
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased words: longest common subsequence over both lengths."""
    cand = _WORD.findall(candidate.lower())
    ref = _WORD.findall(reference.lower())
    lcs = _lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def embedding_similarities(pairs: list[tuple[str, str]], embed: Callable[[list[str]], Any] | None = None
                           ) -> list[float] | None:
    """Cosine similarity of each (text, reference) pair with the app's sentence embedder."""
    if not pairs:
        return []
    if embed is None:
        try:
            from knowledge.embeddings import shared_embedder

            embed = shared_embedder().embed
        except (ImportError, OSError) as exc:
            log.warning("embedding similarity skipped: the embedding model could not be loaded (%s)", exc)
            return None
    texts = [t for pair in pairs for t in pair]
    vectors = embed(texts)
    # The embedder returns L2-normalised rows, so the dot product is the cosine.
    return [float((vectors[2 * i] * vectors[2 * i + 1]).sum()) for i in range(len(pairs))]


def generate_reply(model: Any, tokenizer: Any, prompt: list[dict[str, str]], max_new_tokens: int) -> str:
    """One greedy reply to a conversation through the tokenizer's chat template."""
    import torch

    encoded = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
    device = next(model.parameters()).device
    encoded = {k: v.to(device) for k, v in encoded.items()}
    with torch.no_grad():
        output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    new_tokens = output[0, encoded["input_ids"].shape[1]:]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def compare_replies(model: Any, tokenizer: Any, examples: list[dict[str, Any]], max_new_tokens: int,
                    embed: Callable[[list[str]], Any] | None = None,
                    on_prompt: Callable[[int, int], None] | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Answer each held-out prompt with the adapter off and on; score both against the reference."""
    replies: dict[str, list[str]] = {"base": [], "adapter": []}
    for start in range(0, len(examples), batch_size):
        if on_prompt:
            on_prompt(start, len(examples))
        prompts = [e["prompt"] for e in examples[start:start + batch_size]]
        with model.disable_adapter():
            replies["base"] += generate_replies(model, tokenizer, prompts, max_new_tokens, batch_size)
        replies["adapter"] += generate_replies(model, tokenizer, prompts, max_new_tokens, batch_size)
    rows = comparison_rows(examples, replies["base"], replies["adapter"], embed)
    return {"rows": rows, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each score over the compared prompts."""
    out: dict[str, float | None] = {}
    for key in ("rouge_l_base", "rouge_l_adapter", "similarity_base", "similarity_adapter"):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(fmean(values), 4) if values else None
    return out


# ---- scoring an adapter on any held-out table ----------------------------------------------------


def generate_replies(model: Any, tokenizer: Any, prompts: list[list[dict[str, str]]], max_new_tokens: int,
                     batch_size: int = 8) -> list[str]:
    """Greedy replies to many conversations, a left-padded batch at a time (much faster than one by one)."""
    import torch

    device = next(model.parameters()).device
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                     for p in prompts[start:start + batch_size]]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():
                output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            new = output[:, encoded["input_ids"].shape[1]:]
            replies.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return replies


def completion_loss(model: Any, tokenizer: Any, examples: list[dict[str, Any]], max_length: int = 512,
                    batch_size: int = 8) -> float:
    """Mean cross-entropy per reply token (prompt tokens not scored), as the trainer's eval loss counts it."""
    import torch

    device = next(model.parameters()).device
    rows = []
    for example in examples:
        prompt = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True)
        full = tokenizer.apply_chat_template(list(example["prompt"]) + list(example["completion"]), tokenize=True)
        prompt_ids = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        ids = (full["input_ids"] if hasattr(full, "keys") else full)[:max_length]
        labels = [-100] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids):]
        rows.append((ids, labels))
    total, count = 0.0, 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch], device=device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                   ignore_index=-100, reduction="sum")
        total += float(losses)
        count += int((target != -100).sum())
    return total / count if count else float("nan")


def evaluate_adapter(adapter_dir: str, examples: list[dict[str, Any]], max_new_tokens: int = 128,
                     max_length: int = 512, embed: Callable[[list[str]], Any] | None = None,
                     progress: Callable[[str], None] | None = None, batch_size: int = 8) -> dict[str, Any]:
    """Score the base model and the adapter on the same examples: eval loss, perplexity, ROUGE-L, similarity."""
    import math
    import time

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from training.export import load_adapter_info
    from training.trainer import load_tokenizer

    say = progress or (lambda message: None)
    info = load_adapter_info(adapter_dir)
    say(f"loading {info.base_model} with the adapter {info.path}")
    tokenizer = load_tokenizer(str(info.path) if (info.path / "tokenizer_config.json").is_file() else info.base_model)
    base = AutoModelForCausalLM.from_pretrained(load_base_path(info.base_model))
    model = PeftModel.from_pretrained(base, str(info.path)).eval()
    prompts = [e["prompt"] for e in examples]
    out: dict[str, Any] = {"n": len(examples), "adapter": str(info.path), "base_model": info.base_model}
    started = time.monotonic()
    for which in ("base", "adapter"):
        with (model.disable_adapter() if which == "base" else nullcontext()):
            say(f"{which}: eval loss on {len(examples)} examples")
            out[f"eval_loss_{which}"] = round(completion_loss(model, tokenizer, examples, max_length, batch_size), 4)
            out[f"perplexity_{which}"] = round(math.exp(min(out[f"eval_loss_{which}"], 50)), 3)
            say(f"{which}: generating {len(examples)} replies")
            out[f"replies_{which}"] = generate_replies(model, tokenizer, prompts, max_new_tokens, batch_size)
    rows = comparison_rows(examples, out.pop("replies_base"), out.pop("replies_adapter"), embed)
    out.update(summarise(rows))
    out["seconds"] = round(time.monotonic() - started, 1)
    out["rows"] = rows
    return out


def load_base_path(base_model: str) -> str:
    """A base model folder, the bundled model's name resolved to its converted folder."""
    from backends.bundled import resolve_model_path

    return resolve_model_path(base_model)


def comparison_rows(examples: list[dict], base: list[str], adapter: list[str], embed) -> list[dict]:
    """One row per example: its last customer message, the reference reply, both models' replies,
    their ROUGE-L and, where `embed` is given, their embedding similarity to the reference."""
    rows = []
    for example, base_reply, adapter_reply in zip(examples, base, adapter):
        reference = example["completion"][0]["content"]
        last_user = next((m["content"] for m in reversed(example["prompt"]) if m["role"] == "user"), "")
        rows.append({"prompt": last_user, "reference": reference, "base": base_reply, "adapter": adapter_reply,
                     "rouge_l_base": rouge_l(base_reply, reference),
                     "rouge_l_adapter": rouge_l(adapter_reply, reference)})
    sims = embedding_similarities([(r[k], r["reference"]) for r in rows for k in ("base", "adapter")], embed)
    if sims is not None:
        for i, row in enumerate(rows):
            row["similarity_base"], row["similarity_adapter"] = sims[2 * i], sims[2 * i + 1]
    return rows
