"""Before/after comparison on held-out prompts: ROUGE-L and embedding similarity to the reference."""

from __future__ import annotations

import logging
import re
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
                    on_prompt: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Answer each held-out prompt with the adapter off and on; score both against the reference."""
    rows = []
    for i, example in enumerate(examples):
        if on_prompt:
            on_prompt(i, len(examples))
        reference = example["completion"][0]["content"]
        with model.disable_adapter():
            base = generate_reply(model, tokenizer, example["prompt"], max_new_tokens)
        tuned = generate_reply(model, tokenizer, example["prompt"], max_new_tokens)
        last_user = next((m["content"] for m in reversed(example["prompt"]) if m["role"] == "user"), "")
        rows.append({"prompt": last_user, "reference": reference, "base": base, "adapter": tuned,
                     "rouge_l_base": rouge_l(base, reference), "rouge_l_adapter": rouge_l(tuned, reference)})
    sims = embedding_similarities([(r[k], r["reference"]) for r in rows for k in ("base", "adapter")], embed)
    if sims is not None:
        for i, row in enumerate(rows):
            row["similarity_base"], row["similarity_adapter"] = sims[2 * i], sims[2 * i + 1]
    return {"rows": rows, "summary": summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean of each score over the compared prompts."""
    out: dict[str, float | None] = {}
    for key in ("rouge_l_base", "rouge_l_adapter", "similarity_base", "similarity_adapter"):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(fmean(values), 4) if values else None
    return out
