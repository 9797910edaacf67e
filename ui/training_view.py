"""The Training page's result of a run: the base model and the adapter side by side, in numbers and replies."""

from __future__ import annotations

from typing import Any

import streamlit as st

# (label, metrics key of the base model, metrics key of the adapter, lower is better)
SCORES = (
    ("Eval loss", "eval_loss_base", "eval_loss", True),
    ("Perplexity", "perplexity_base", "perplexity", True),
    ("ROUGE-L", "rouge_l_base", "rouge_l_adapter", False),
    ("Embedding similarity", "similarity_base", "similarity_adapter", False),
)


def before_after_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per score: the base model, the adapter, and the change."""
    rows = []
    for label, base_key, adapter_key, lower_better in SCORES:
        base, tuned = metrics.get(base_key), metrics.get(adapter_key)
        if base is None and tuned is None:
            continue
        change = tuned - base if isinstance(base, (int, float)) and isinstance(tuned, (int, float)) else None
        better = None if change is None or change == 0 else (change < 0) == lower_better
        rows.append({"score": label, "base model": _round(base), "adapter": _round(tuned),
                     "change": _round(change), "better": {True: "yes", False: "no", None: "-"}[better]})
    return rows


def render_before_after(metrics: dict[str, Any], comparison: dict[str, Any] | None) -> None:
    """Scores before and after on held-out data, then each held-out prompt's two replies and the reference."""
    rows = before_after_rows(metrics)
    if rows:
        st.markdown("**Base model and adapter on held-out data**")
        st.table(rows)
    if comparison and comparison.get("rows"):
        st.markdown("**Before and after on held-out prompts**")
        st.dataframe([{"prompt": r["prompt"], "reference": r["reference"], "base model": r["base"],
                       "adapter": r["adapter"], "ROUGE-L base": round(r["rouge_l_base"], 3),
                       "ROUGE-L adapter": round(r["rouge_l_adapter"], 3),
                       "similarity base": round(r["similarity_base"], 3) if "similarity_base" in r else None,
                       "similarity adapter": round(r["similarity_adapter"], 3) if "similarity_adapter" in r else None}
                      for r in comparison["rows"]], hide_index=True, width="stretch")


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, (int, float)) else value
