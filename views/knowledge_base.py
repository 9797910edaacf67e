"""Knowledge base: upload documents with per-file progress, list, inspect and delete them,
re-index after changing the chunk settings, and try a search. Agents read and search; admins
also upload, delete and re-index."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from common.errors import ChatbotError
from common.wording import plural
from ui.knowledge_jobs import (FUSION_METHODS, MAX_UPLOAD_MB, RETRIEVER_MODES, UPLOAD_TYPES, IngestionJob,
                               held_uploads, job_progress, large_uploads, literal, model_notice, rebuild_job, reindex_job,
                               upload_job)
from ui.auth import ADMIN_ONLY, admin_hint, authorized, is_admin
from ui.confirm import ask_first, confirmed
from ui.services import get_services

services = get_services()
kb = services.knowledge
admin = is_admin()
locked_help = None if admin else ADMIN_ONLY

ICONS = {"waiting": "⏳", "reading": "📄", "embedding": "⚙️", "added": "✅", "updated": "🔁",
         "unchanged": "⏭️", "held": "✋", "error": "❌", "cancelled": "⛔"}
DETAIL = {"added": "{chunks} added", "updated": "replaced, {chunks}",
          "unchanged": "unchanged, skipped ({chunks} already stored)", "cancelled": "cancelled, nothing kept"}

st.title("Knowledge base")


def job_running() -> bool:
    job = st.session_state.get("kb_job")
    return job is not None and job.running


def start(job_factory) -> None:
    try:
        st.session_state["kb_job"] = job_factory().start()
    except (ChatbotError, ValueError) as exc:
        st.error(str(exc))


def render_job() -> None:
    """Progress of the running (or last) ingestion; polled while it runs."""
    job: IngestionJob | None = st.session_state.get("kb_job")
    if job is None:
        return
    if job.running:
        fraction, line = job_progress(job)
        st.progress(fraction, text=line)
        st.button("Cancel", key="kb_cancel", icon=":material/cancel:", on_click=job.cancel, disabled=job.cancelling)
    for f in job.files:
        # Names and reasons come from the uploads: shown as they are, never as markup.
        detail = literal(f.error) if f.state in ("error", "held") \
            else DETAIL.get(f.state, f.state).format(chunks=plural(f.chunks, "chunk"))
        line = f"{ICONS.get(f.state, '')} **{literal(f.name)}**: {detail}"
        if f.state == "error":
            st.error(line)
        elif f.state in ("cancelled", "held"):
            st.warning(line)
        elif f.state in ("added", "updated"):
            st.success(line)
        else:
            st.write(line)
    if job.error:
        st.error(f"The {job.kind} stopped: {literal(job.error)}")
    held = held_uploads(job)
    if held and st.button(f"Ingest the {len(held)} held file{'s' if len(held) > 1 else ''} anyway", key="kb_ingest_held",
                          icon=":material/upload:", disabled=job.running) and authorized("change_knowledge"):
        st.session_state["kb_job_seen"] = False
        start(lambda: upload_job(kb, held, allow=[name for name, _ in held]))
        st.rerun(scope="app")
    if not job.running and not st.session_state.get("kb_job_seen"):
        # The documents list below was drawn before the job ended: draw the page once more.
        st.session_state["kb_job_seen"] = True
        st.rerun(scope="app")


# -- a store built with another embedding model ---------------------------------------------
if (notice := model_notice(kb)) and not job_running():  # a running rebuild shows its own progress
    st.warning(literal(notice), icon=":material/sync_problem:")
    if st.button("Rebuild with this model", key="kb_rebuild", icon=":material/sync:",
                 disabled=job_running() or not admin, help=locked_help) and authorized("change_knowledge"):
        st.session_state["kb_job_seen"] = False
        start(lambda: rebuild_job(kb))
        st.rerun()

# -- add documents ------------------------------------------------------------------------
st.subheader("Add documents")
if not admin:
    admin_hint("change_knowledge")
with st.form("kb_upload_form", clear_on_submit=True, border=False):
    # No `type=`: Streamlit then refuses the whole widget value, every file of the batch, when one name
    # holds a NUL byte or a type it does not list; each file's type and name is checked on its own instead.
    files = st.file_uploader(
        f"Markdown, text, PDF, HTML, or FAQ CSV/JSONL (question and answer columns): {', '.join(UPLOAD_TYPES)}",
        accept_multiple_files=True, key="kb_upload",
        max_upload_size=MAX_UPLOAD_MB, disabled=not admin,
    )
    submitted = st.form_submit_button("Ingest", key="kb_ingest", icon=":material/upload:", disabled=not admin,
                                      help=locked_help)
if submitted and authorized("change_knowledge"):
    if job_running():
        st.warning("An ingestion is already running; wait for it or cancel it.")
    elif files:
        uploads = [(f.name, f.getvalue()) for f in files]
        if large_uploads(kb, [(name, len(data)) for name, data in uploads]):
            st.session_state["kb_pending"] = uploads  # kept until confirmed or dropped
        else:
            st.session_state["kb_job_seen"] = False
            start(lambda: upload_job(kb, uploads))
    else:
        st.info("Choose one or more files first.")
if pending := st.session_state.get("kb_pending"):
    for warning in large_uploads(kb, [(name, len(data)) for name, data in pending]):
        st.warning(literal(warning), icon=":material/hourglass:")
    go, drop = st.columns(2)
    if go.button("Ingest anyway", key="kb_ingest_large", icon=":material/upload:", disabled=job_running()) \
            and authorized("change_knowledge"):
        st.session_state.pop("kb_pending")
        st.session_state["kb_job_seen"] = False
        start(lambda: upload_job(kb, pending))
        st.rerun()
    if drop.button("Don't ingest", key="kb_drop_large"):
        st.session_state.pop("kb_pending")
        st.rerun()

# While a job runs, only this part reruns, every second.
st.fragment(render_job, run_every=1.0 if job_running() else None)()

# -- the documents ------------------------------------------------------------------------
try:
    docs = kb.documents()
    store_error = ""
except ChatbotError as exc:  # a Chroma server that went away: say so, keep keyword search usable
    docs, store_error = [], str(exc)
    st.error(store_error)
st.subheader(f"{plural(len(docs), 'document')} · {plural(sum(d.chunks for d in docs), 'chunk')}")
if docs:
    st.dataframe(
        [
            {"title": d.title, "source": d.source, "category": d.category, "chunks": d.chunks,
             "size (KB)": round(d.size_bytes / 1024, 1),
             "ingested": datetime.fromtimestamp(d.ingested_at).strftime("%Y-%m-%d %H:%M")}
            for d in docs
        ],
        hide_index=True, width="stretch",
    )
    choice = st.selectbox("Document", docs, format_func=lambda d: f"{d.title} ({d.source})", key="kb_doc")
    show, delete = st.columns(2)
    with show.popover("Show chunks", icon=":material/view_agenda:"):
        for p in kb.chunks_of(choice.doc_id):
            st.markdown(f"**Chunk {p.chunk}** · {literal(p.heading or p.title)}")
            st.text(p.text)
    if delete.button("Delete document", key="kb_delete", icon=":material/delete:", disabled=job_running() or not admin,
                     help=locked_help):
        ask_first("kb_confirm_delete", choice.doc_id)
    if confirmed("kb_confirm_delete", choice.doc_id, f"Delete {literal(choice.source)} ({plural(choice.chunks, 'chunk')}) "
                 "from the knowledge base for good?", "change_knowledge", "kb"):
        try:
            # Waits its turn if another process (an ingestion from the command line) is writing.
            with st.spinner("Deleting…"):
                kb.delete(choice.doc_id)
        except ChatbotError as exc:
            st.error(str(exc))
        else:
            st.toast(f"Deleted {literal(choice.source)}")
            st.rerun()
elif not store_error:
    st.info("No documents yet: add some above.")

# -- chunk settings and re-index --------------------------------------------------------------
with st.expander("Chunk settings and re-index"):
    if not admin:
        admin_hint("change_knowledge")
    size = st.number_input("Chunk size (characters)", min_value=100, max_value=8000, step=50,
                           value=kb.chunking.size, key="kb_chunk_size", disabled=not admin)
    overlap = st.number_input("Overlap (characters)", min_value=0, max_value=4000, step=10,
                              value=kb.chunking.overlap, key="kb_chunk_overlap", disabled=not admin)
    stale = [d for d in docs if (d.chunk_size, d.chunk_overlap) != (kb.chunking.size, kb.chunking.overlap)]
    if stale:
        st.warning(f"{plural(len(stale), 'document')} {'was' if len(stale) == 1 else 'were'} chunked with other settings; re-index to apply these.")
    if st.button("Re-index everything", key="kb_reindex", icon=":material/refresh:", disabled=job_running() or not admin,
                 help=locked_help) and authorized("change_knowledge"):
        st.session_state["kb_job_seen"] = False
        start(lambda: reindex_job(kb, size, overlap))
        if job_running():
            st.rerun()

# -- test search ------------------------------------------------------------------------------
st.subheader("Test search")
query = st.text_input("Query", key="kb_query", placeholder="e.g. my money hasn't come back")
mode_col, fusion_col, category_col, source_col, k_col = st.columns([1, 1, 1, 2, 1])
mode = mode_col.selectbox("Retrievers", RETRIEVER_MODES, key="kb_mode")
fusion = fusion_col.selectbox("Fusion", FUSION_METHODS, index=FUSION_METHODS.index(kb.fusion), key="kb_fusion",
                              disabled=mode != "hybrid")
category = category_col.selectbox("Category", ["(all)", *kb.categories()], key="kb_category")
source = source_col.selectbox("Source", ["(all)", *sorted(d.source for d in docs)], key="kb_source")
k = k_col.number_input("Passages", min_value=1, max_value=20, value=5, key="kb_k")
if query:
    where = {key: value for key, value in (("category", category), ("source", source)) if value != "(all)"}
    try:
        passages = kb.search(query, k=int(k), where=where, mode=mode, fusion=fusion)
    except ChatbotError as exc:
        st.error(str(exc))
        passages = []
    if kb.degraded:
        st.warning(f"Vector search is unavailable, these come from keywords alone: {kb.degraded}")
    if not passages:
        st.info("Nothing found.")
    for rank, p in enumerate(passages, 1):
        where_in = literal(f"{p.title} › {p.heading}" if p.heading else p.title)
        st.markdown(f"**{rank}. {where_in}** · score {p.score:.3f} · found by {', '.join(p.retrievers)}")
        st.caption(f"{literal(p.source)} · chunk {p.chunk}")
        st.text(p.text[:500])
