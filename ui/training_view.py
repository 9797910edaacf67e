"""The Training page's pieces: dataset checks, job progress and loss charts, and a run's before and after."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pandas as pd
import streamlit as st

from common.wording import plural
from training.jobs import JobStatus
from training.progress import format_duration
from training.spec import METHOD_LABELS, default_method

STATE_ICONS = {"running": "🟢", "stopping": "🟠", "completed": "✅", "failed": "❌", "stopped": "⏹️", "created": "⚪"}
FLOAT_FORMATS = {"learning_rate": "%.1e"}

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


# ---- dataset checks -------------------------------------------------------------------------------


def length_bins(lengths: list[int], most: int = 20) -> pd.DataFrame:
    """Token lengths counted in equal integer ranges, in numeric order: columns `tokens` ("20-39") and `examples`."""
    if not lengths:
        return pd.DataFrame({"tokens": [], "examples": []})
    low, high = min(lengths), max(lengths)
    width = max(1, math.ceil((high - low + 1) / min(most, len(set(lengths)))))
    counts = Counter((n - low) // width for n in lengths)
    starts = [low + i * width for i in range((high - low) // width + 1)]
    labels = [f"{s}" if width == 1 else f"{s}-{s + width - 1}" for s in starts]
    return pd.DataFrame({"tokens": labels, "examples": [counts.get(i, 0) for i in range(len(starts))]})


def render_length_histogram(lengths: list[int]) -> None:
    """A bar per token range, left to right from short to long (never in text order)."""
    st.bar_chart(length_bins(lengths), x="tokens", y="examples", sort=False, x_label="tokens",
                 y_label="examples", height=180)


def render_dataset_checks(result: Any, built: Any) -> None:
    """Records read and rejected, the split, every rejected record and what is left out for length."""
    m = st.columns(5)
    m[0].metric("Records read", result.records)
    m[1].metric("Rejected", len(result.errors))
    m[2].metric("Examples", len(result.examples))
    m[3].metric("Train", len(built.train) if built else 0)
    m[4].metric("Validation", len(built.validation) if built else 0)
    issues = built.issues if built else result.issues
    errors = [i for i in issues if i.level == "error"]
    if errors:
        verb = "was" if len(errors) == 1 else "were"
        st.error(f"{plural(len(errors), 'record')} of {result.source} {verb} left out; the rest is kept. Fix these and "
                 "upload the file again to include them:\n\n" + "\n".join(f"- {i}" for i in errors[:20])
                 + (f"\n- … and {len(errors) - 20} more" if len(errors) > 20 else ""))
    if built and built.length_message():
        st.warning(built.length_message(), icon=":material/content_cut:")
    for issue in [i for i in issues if i.level == "warning"][:10]:
        st.warning(str(issue))


# ---- jobs -----------------------------------------------------------------------------------------


def progress_text(p: dict[str, Any]) -> str:
    """The progress bar's line: "Starting…" until the trainer knows its total steps, then step, ETA, phase."""
    if not p["total"]:
        return f"Starting… · {p['phase']}" if p["phase"] else "Starting…"
    text = f"Step {p['step'] or 0}/{p['total']} · ETA {format_duration(p['eta_s'])} · {p['phase'] or 'training'}"
    if p["compare"]:
        text += f" ({p['compare'][0] + 1}/{p['compare'][1]})"
    return text


def progress_cell(p: dict[str, Any], running: bool) -> str:
    """The jobs table's progress column: "Starting…", "12/30", or a dash for a job that never began."""
    if p["total"]:
        return f"{p['step'] or 0}/{p['total']}"
    return "Starting…" if running else "-"


def data_caption(data: dict[str, Any] | None) -> str | None:
    """What the job trains on: examples used, examples left out for length, reply tokens a pass."""
    if not data:
        return None
    used, left = data.get("examples_used", 0), data.get("examples_left_out_for_length", 0)
    return (f"Trains on {plural(used, 'example')} ({left} left out for length) · "
            f"{data.get('tokens_trained', 0):,} reply tokens a pass")


def loss_chart_data(train_points: list, eval_points: list) -> pd.DataFrame:
    """Long-form losses (step, loss, series), the last value per step, so each series draws on its own steps."""
    frames = []
    for name, points in (("train loss", train_points), ("eval loss", eval_points)):
        frame = pd.DataFrame(points, columns=["step", "loss"]).dropna().drop_duplicates("step", keep="last")
        frames.append(frame.assign(series=name))
    return pd.concat(frames, ignore_index=True).sort_values(["series", "step"], ignore_index=True)


def render_loss_chart(p: dict[str, Any]) -> None:
    """Train loss as a line; eval loss as a line through marked points, so a single evaluation shows too."""
    import altair as alt

    data = loss_chart_data(p["train_points"], p["eval_points"])
    base = alt.Chart(data).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("loss:Q", title="loss", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", title=None, scale=alt.Scale(domain=["train loss", "eval loss"])),
        tooltip=["series:N", "step:Q", alt.Tooltip("loss:Q", format=".4f")])
    points = base.transform_filter(alt.datum.series == "eval loss").mark_point(filled=True, size=60)
    st.altair_chart(base.mark_line() + points, height=260, width="stretch")


def guess(columns: list[str], words: tuple[str, ...], fallback: int) -> int:
    """The first column whose name holds one of `words`, else the column at `fallback`."""
    for i, column in enumerate(columns):
        if any(w in column.lower() for w in words):
            return i
    return min(fallback, len(columns) - 1)


def job_label(status: JobStatus) -> str:
    return f"{STATE_ICONS.get(status.state, '')} {status.id} · {status.state}"


def spec_widget(container, f, cuda: bool) -> object:
    """The widget of one TrainingSpec field (`f`, a dataclass field), by its type and choices; its value."""
    key = f"spec_{f.name}"
    # The value now is also the widget's default, so a widget the browser mounts afresh (a tab opened while
    # the page was still running, a collapsed group) shows and sends it, never a blank 0.
    value = st.session_state.get(key, default_method(cuda) if f.name == "method" else f.default)
    label, help_text = f.name.replace("_", " ").capitalize(), f.metadata["help"]
    if f.metadata.get("choices"):
        choices = f.metadata["choices"]
        return container.selectbox(label, choices, index=choices.index(value) if value in choices else 0, key=key,
                                   help=help_text, format_func=lambda v: METHOD_LABELS.get(v, v))
    if isinstance(f.default, bool):
        return container.checkbox(label, value=bool(value), key=key, help=help_text)
    if isinstance(f.default, int):
        return int(container.number_input(label, value=int(value), step=1, key=key, help=help_text))
    if isinstance(f.default, float):
        return float(container.number_input(label, value=float(value), key=key, help=help_text,
                                            format=FLOAT_FORMATS.get(f.name, "%.3f"),
                                            step=1e-5 if f.name == "learning_rate" else 0.01))
    return container.text_input(label, value=str(value), key=key, help=help_text)
