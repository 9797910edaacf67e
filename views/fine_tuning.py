"""Training: build a dataset, launch a LoRA/QLoRA job, watch it learn, compare and use adapters."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Callable

import streamlit as st

from common.errors import ChatbotError
from common.extras import TRAINING_PACKAGES, install_hint, missing
from training import datasets as ds
from training.export import best_adapter, list_adapters, runs_table
from training.jobs import JobManager, JobStatus, summarise_progress
from training.progress import format_duration
from training.spec import TrainingSpec, field_help
from training.demo import DEMO_SETTINGS
from ui.auth import authorized, require_admin
from ui.confirm import ask_first, confirmed
from ui.local_models import BUNDLED_LABEL, BUNDLED_MODEL, is_bundled, prepare_local_model
from ui.page_state import TRAINING_WIDGETS, keep_widget_state, open_chat_with_local_model
from ui.services import get_settings
from ui.training_view import (data_caption, guess, job_label, progress_cell, progress_text, render_before_after,
                              render_dataset_checks, render_length_histogram, render_loss_chart, spec_widget)

require_admin()
if absent := missing(TRAINING_PACKAGES):  # the chat-only install (requirements.txt)
    st.title("Training")
    st.warning(install_hint("Training", absent), icon=":material/download:")
    st.stop()

GROUPS = {"model": "Method", "adapter": "Adapter", "quantisation": "4-bit quantisation (QLoRA)",
          "optimisation": "Optimisation", "intervals": "Logging, evaluation and checkpoints",
          "data": "Output and comparison"}
HIDDEN = {"base_model", "train_file", "eval_file", "load_in_4bit"}
SOURCES = {"sample": "Nimbus Home sample", "bitext": "Bitext customer support (810 requests)", "chat": "Chat JSONL", "pairs": "Instruction/response table",
           "stored": "Stored conversations"}
TABS = ["Dataset", "New job", "Jobs", "Adapters"]


@st.cache_resource(show_spinner=False)
def job_manager(data_dir: str) -> JobManager:
    return JobManager(data_dir)


@st.cache_resource(show_spinner="Looking for a CUDA GPU…")
def cuda_available() -> bool:
    from training.trainer import cuda_available as probe

    return probe()


@st.cache_resource(show_spinner="Loading the tokenizer…", max_entries=4)
def load_tokenizer(base_model: str):
    from training.model_setup import load_tokenizer as load

    return load(base_model)


@st.cache_data(show_spinner="Measuring the examples…", max_entries=8)
def build_dataset(result: ds.LoadResult, base_model: str, exact: bool, _tokenizer, max_len: int,
                  val_fraction: float, seed: int, drop_long: bool) -> ds.BuiltDataset:
    # Tokenising every example on each rerun would cost more than the rest of the page.
    return ds.build(result, _tokenizer, max_len, val_fraction, seed, drop_long)


settings = get_settings()
manager = job_manager(str(settings.data_dir))
cuda = cuda_available()
st.session_state.setdefault("train_base_model", settings.local_model_path)
for pending in ("job_select", "train_tab"):  # set by an action below the widget, for the next run
    if f"{pending}_pending" in st.session_state:
        st.session_state[pending] = st.session_state.pop(f"{pending}_pending")


def make_tiny() -> None:
    if not authorized("train"):  # a callback runs before the page's sign-in gate
        return
    from training.tiny_model import make_tiny_model

    path = make_tiny_model(manager.root / "tiny-model")
    st.session_state["train_base_model"] = str(path)


def use_bundled() -> None:
    st.session_state["train_base_model"] = BUNDLED_MODEL


def use_demo_preset() -> None:
    """The CPU demo: the bundled model, the Bitext requests (long replies truncated) and settings for minutes."""
    use_bundled()
    st.session_state.update(ds_source="bitext", ds_drop_long=False, ds_val_fraction=0.1)
    st.session_state.update({f"spec_{k}": v for k, v in DEMO_SETTINGS.items() if k != "base_model"})


keep_widget_state(TRAINING_WIDGETS)  # every choice here outlives a visit to another page
st.title("Training")
if "training_flash" in st.session_state:
    st.success(st.session_state.pop("training_flash"))
st.caption("Fine-tune a model on support conversations with LoRA or QLoRA, watch it learn, and chat with the result.")
if not cuda:
    st.info("No CUDA GPU on this server. QLoRA loads the base model in 4 bits and needs one, so jobs here run as "
            "plain LoRA (or DoRA, IA3) on the CPU, which suits small models. The tiny demo model trains in seconds.",
            icon=":material/memory:")

left, middle, right = st.columns([3, 1, 1], vertical_alignment="bottom")
base_model = left.text_input("Base model", key="train_base_model", help=field_help("base_model")
                             + f" {BUNDLED_MODEL} is the bundled {BUNDLED_LABEL}.").strip()
middle.button(f"Use {BUNDLED_MODEL}", key="use_bundled_model", on_click=use_bundled, help=BUNDLED_LABEL)
right.button("Make a tiny demo model", key="make_tiny_model", on_click=make_tiny,
             help="A small random Llama with a tokenizer trained here: no download, trains in seconds.")
st.button("CPU demo: SmolLM2 on the Bitext requests", key="demo_preset", on_click=use_demo_preset,
          help="The bundled model, the Bitext dataset, and LoRA r8 on q_proj/v_proj with 128-token examples for "
               "60 steps: minutes on a CPU. Same as `python -m chatbot finetune-demo`.")

tokenizer = None
model_folder = base_model
if base_model:
    try:
        # The bundled model by name: converted into the data directory once, a model folder from then on.
        model_folder = prepare_local_model(base_model, settings.data_dir)
        tokenizer = load_tokenizer(model_folder)
    except ChatbotError as exc:
        st.warning(f"{exc} Token counts below are estimates.")

# Keyed and stateful, so the open tab survives every rerun (a launch, a stop, a job that ends). A launch opens
# the Jobs tab, where its job is shown; the job picker there is then mounted when its new value arrives.
tab_data, tab_job, tab_jobs, tab_adapters = st.tabs(TABS, key="train_tab", on_change="rerun")


def load_source() -> ds.LoadResult | None:
    source = st.radio("Source", list(SOURCES), format_func=SOURCES.get, key="ds_source", horizontal=True)
    if source == "sample":
        st.caption(f"{ds.SAMPLE_CHAT.name}: support conversations written for this project.")
        return ds.load_chat_jsonl(ds.SAMPLE_CHAT)
    if source == "bitext":
        st.caption(f"{ds.SAMPLE_BITEXT.name}: 30 requests for each of 27 intents from Bitext's customer-support "
                   "sample (CDLA-Sharing-1.0), instruction -> response. Replies keep placeholders like "
                   "{{Order Number}}.")
        return ds.load_bitext()
    if source == "chat":
        upload = st.file_uploader('JSON lines of {"messages": [{"role", "content"}, ...]}', type=["jsonl", "json"],
                                  key="ds_chat_file")
        return ds.load_chat_jsonl(upload.getvalue(), name=upload.name) if upload else None
    if source == "pairs":
        upload = st.file_uploader("CSV or JSON lines, one instruction and response per row", type=["csv", "jsonl"],
                                  key="ds_table_file")
        use_sample = st.checkbox(f"Use the shipped sample table ({ds.SAMPLE_PAIRS.name})", key="ds_table_sample")
        if upload:
            data, name = upload.getvalue(), upload.name
        elif use_sample:
            data, name = ds.SAMPLE_PAIRS.read_bytes(), ds.SAMPLE_PAIRS.name
        else:
            return None
        kind = "csv" if name.lower().endswith(".csv") else "jsonl"
        columns, _ = ds.read_table(data, kind, name)
        c1, c2, c3 = st.columns(3)
        instruction = c1.selectbox("Instruction column", columns, key="ds_col_instruction",
                                   index=guess(columns, ("instruction", "question", "prompt", "query"), 0))
        response = c2.selectbox("Response column", columns, key="ds_col_response",
                                index=guess(columns, ("response", "answer", "reply", "output"), 1))
        extra = c3.selectbox("Extra input column", ["(none)", *columns], key="ds_col_input")
        return ds.load_pairs(data, kind, instruction, response, None if extra == "(none)" else extra, name=name)
    st.caption("Agent-approved assistant replies, each with the conversation before it.")
    limit = int(st.number_input("Most recent conversations to scan", 10, 100_000, 1000, key="ds_stored_limit"))
    if st.button("Scan stored conversations", key="ds_scan"):
        from ui.services import get_services

        store = get_services().store
        st.session_state["ds_stored"] = ds.from_conversations(store.approved_conversations(limit=limit))
    return st.session_state.get("ds_stored")


def render_dataset() -> ds.BuiltDataset | None:
    try:
        result = load_source()
    except ChatbotError as exc:
        st.error(str(exc))
        return None
    if result is None:
        return None
    c1, c2 = st.columns(2)
    st.session_state.setdefault("ds_val_fraction", 0.1)
    st.session_state.setdefault("ds_drop_long", True)  # the CPU demo preset turns it off: truncate instead
    val_fraction = c1.slider("Validation share", 0.0, 0.5, step=0.05, key="ds_val_fraction")
    drop_long = c2.checkbox("Leave out examples over the sequence length", key="ds_drop_long")
    max_len = int(st.session_state.get("spec_max_seq_length", TrainingSpec.max_seq_length))
    try:
        built = build_dataset(result, base_model, tokenizer is not None, tokenizer, max_len, val_fraction,
                              int(st.session_state.get("spec_seed", 42)), drop_long)
    except ChatbotError as exc:
        st.error(str(exc))
        built = None
    render_dataset_checks(result, built)
    if not built:
        return None
    s = built.stats
    st.markdown(f"**Tokens per example** ({'exact, by the base model' if built.exact_tokens else 'estimated'}"
                f"{'' if built.exact_tokens else ': choose a base model for exact counts'})")
    t = st.columns(5)
    for col, key in zip(t, ("min", "median", "mean", "p95", "max")):
        col.metric(key, s[key])
    if built.exact_tokens:
        st.caption(f"{built.tokens_trained:,} reply tokens to learn from in the training split, a pass.")
    render_length_histogram(built.lengths)
    st.dataframe(ds.preview_rows(built.train, 10), hide_index=True, width="stretch")
    return built


def start_job(create: Callable[[], JobStatus], kind: str) -> None:
    """Create a job and start it, then show it in the Jobs tab; a failure is shown and leaves no job behind."""
    created = None
    try:
        created = create()
        status = manager.start(created.id)
    except ChatbotError as exc:
        if created is not None:  # another session started a job first: leave no orphan behind
            manager.delete(created.id)
        st.error(str(exc))
    else:
        st.session_state["job_select_pending"] = status.id
        st.session_state["train_tab_pending"] = "Jobs"
        st.session_state["training_flash"] = f"{kind} {status.id} started: follow it in the Jobs tab."
        st.rerun()


def render_new_job(built: ds.BuiltDataset | None) -> None:
    values: dict[str, object] = {"base_model": model_folder}
    for group, title in GROUPS.items():
        group_fields = [f for f in fields(TrainingSpec) if f.metadata["group"] == group and f.name not in HIDDEN]
        with st.expander(title, expanded=group in ("model", "adapter", "optimisation")):
            cols = st.columns(3)
            for i, f in enumerate(group_fields):
                values[f.name] = spec_widget(cols[i % 3], f, cuda)
    spec = TrainingSpec(**values)
    problems = spec.problems(cuda)
    if base_model and not any("base model" in p for p in problems):
        from training.estimate import describe, estimate

        try:
            est = estimate(spec, cuda, tokens_per_example=built.stats["p95"] if built else None)
            shown = describe(est)
            for col, (label, value) in zip(st.columns(len(shown)), shown.items()):
                col.metric(label, value)
            steps = spec.planned_steps(len(built.train)) if built else None
            total = f" (about {format_duration(est.seconds_per_step * steps)} in all)" \
                if steps and est.seconds_per_step else ""
            st.caption("Memory: " + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in est.breakdown.items())
                       + f"; planned steps: {steps or '?'}{total}; {est.tokens_per_step:,} tokens a step, "
                       f"{est.flops_per_step / 1e12:.2f} TFLOP, timed against this machine's speed now.")
            for warning in est.warnings:
                st.warning(warning)
        except ChatbotError as exc:
            st.warning(str(exc))
    for problem in problems:
        st.error(problem)
    active = manager.active()
    if built is None:
        st.info("Choose a dataset in the Dataset tab first.")
    if active:
        st.warning(f"Job {active.id} is running: one job at a time. Stop it or wait for it to finish.")
    if is_bundled(base_model) and not cuda and built and spec.planned_steps(len(built.train)) > 200:
        st.info("Tip: the CPU demo preset above trains SmolLM2 in minutes.")
    if st.button("Launch training job", type="primary", key="launch_job",
                 disabled=bool(problems) or built is None or active is not None):
        start_job(lambda: manager.create(spec, built.train, built.validation,
                                         left_out_for_length=built.left_out_for_length), "Job")


def stop_job(job_id: str) -> None:
    manager.stop(job_id)  # waits for the job to save a checkpoint and end


def render_job_panel(status: JobStatus, p: dict) -> None:
    """The chosen job: its state, progress `p` (from summarise_progress), metrics, chart, log and actions."""
    job_id = status.id
    st.markdown(f"**{job_id}** · {status.kind} · {status.method or status.adapter_name} · state **{status.state}**")
    if status.running:
        total, step = p["total"] or 0, p["step"] or 0
        st.progress(min(1.0, step / total) if total else 0.0, text=progress_text(p))
    elif status.state == "completed":
        st.success(f"Completed (exit code {status.exit_code}). Adapter: {status.adapter_dir or '-'}")
    elif status.state in ("failed", "stopped"):
        (st.error if status.state == "failed" else st.warning)(
            f"{status.state.capitalize()} (exit code {status.exit_code}): {status.error or 'see the log'}")
    m = st.columns(5)
    m[0].metric("Train loss", f"{p['loss']:.4f}" if p["loss"] is not None else "-")
    m[1].metric("Eval loss", f"{p['eval_loss']:.4f}" if p["eval_loss"] is not None else "-")
    m[2].metric("Tokens/s", f"{p['tokens_per_s']:.0f}" if p["tokens_per_s"] else "-")
    m[3].metric("GPU memory MB" if cuda else "Peak RAM MB", f"{p['memory_mb']:.0f}" if p["memory_mb"] else "-")
    elapsed = (status.finished_at or time.time()) - status.started_at if status.started_at else None
    m[4].metric("Elapsed", format_duration(elapsed))
    if data_caption(p["data"]):
        st.caption(data_caption(p["data"]))
    if p["train_points"] or p["eval_points"]:
        render_loss_chart(p)
    st.code(manager.log_tail(job_id, 25) or "(no output yet)", language="text")
    c1, c2, c3 = st.columns(3)
    # A callback, not `if st.button(...)`: it runs before the next script run, so a click lands even when
    # the panel's periodic refresh is running at that moment; the refresh then sees the job ended.
    if status.running:
        c1.button("Stop", key="job_stop", type="primary", on_click=stop_job, args=(job_id,),
                  help="Checkpoint and end the job's whole process group.")
    resumable = status.kind == "train" and status.state in ("stopped", "failed") and manager.checkpoints(job_id)
    if resumable and c2.button("Resume from the last checkpoint", key="job_resume"):
        try:
            manager.resume(job_id)
        except ChatbotError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    if status.finished and c3.button("Delete job", key="job_delete", help="The job's folder; its adapter stays."):
        ask_first("job_confirm_delete", job_id)
    if confirmed("job_confirm_delete", job_id, f"Delete job {job_id} and its folder for good? Its adapter stays.",
                 "train", "job"):
        manager.delete(job_id)
        st.rerun()


def render_jobs() -> None:
    active = manager.active()

    # The table, the picker and the panel refresh together, so a job's state reads the same everywhere.
    @st.fragment(run_every=2.0 if active else None)
    def live() -> None:
        if active and not manager.status(active.id).running:
            st.rerun()  # the running job just ended: refresh the whole page (launch, adapters), stop polling
        jobs = manager.list()
        if not jobs:
            st.info("No jobs yet: launch one from the New job tab.")
            return
        # Each job's progress file is read once a refresh: the table and the panel share it.
        progress = {s.id: summarise_progress(manager.progress(s.id)) for s in jobs}
        rows = []
        for s in jobs:
            p = progress[s.id]
            rows.append({"job": s.id, "kind": s.kind, "state": s.state, "method": s.method,
                         "progress": progress_cell(p, s.running), "eval loss": p["eval_loss"],
                         "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(s.started_at))
                         if s.started_at else "", "exit code": s.exit_code})
        st.dataframe(rows, hide_index=True, width="stretch")
        by_id = {s.id: s for s in jobs}
        selected = st.session_state.get("job_select")
        # Set on every run: the browser keeps the label it was sent last ("… · running" after a Stop) unless
        # the page sends the value again, and with it the label of the job's state now.
        st.session_state["job_select"] = selected if selected in by_id else \
            next((s.id for s in jobs if s.running), jobs[0].id)
        job_id = st.selectbox("Job", list(by_id), key="job_select", format_func=lambda i: job_label(by_id[i]))
        render_job_panel(by_id[job_id], progress[job_id])

    live()


def render_adapters() -> None:
    adapters = list_adapters(manager.adapters_dir)
    if not adapters:
        st.info("No adapters yet: a finished training job saves one here.")
        return
    st.dataframe(runs_table(adapters), hide_index=True, width="stretch")
    best = best_adapter(adapters)
    if best:
        st.caption(f"Lowest eval loss: **{best.name}** ({best.metrics['eval_loss']:.4f}).")
    by_name = {a.name: a for a in adapters}
    info = by_name[st.selectbox("Adapter", list(by_name), key="adapter_select")]
    st.caption(f"{info.path} · base {info.base_model} · {info.method}")
    c1, c2 = st.columns(2)
    if c1.button("Chat with this adapter", key="adapter_chat", type="primary"):
        open_chat_with_local_model(info.base_model, str(info.path))
    if c2.button("Merge and export", key="adapter_merge",
                 help=f"Writes a standalone model to {manager.merged_dir / info.name}"):
        start_job(lambda: manager.create_merge(info.name), "Export")
    merged = manager.merged_dir / info.name
    if (merged / "config.json").is_file():
        st.success(f"Merged model: {merged}")
    render_before_after(info.metrics, info.comparison)
    with st.expander("Metrics and settings"):
        st.json({"metrics": info.metrics, "settings": info.spec}, expanded=False)


with tab_data:
    built_dataset = render_dataset()
with tab_job:
    render_new_job(built_dataset)
with tab_jobs:
    render_jobs()
with tab_adapters:
    render_adapters()
