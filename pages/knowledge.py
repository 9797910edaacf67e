"""Knowledge base: upload, list and delete documents, and try a search."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from knowledge.loaders import SUPPORTED
from ui.services import get_services

services = get_services()
kb = services.knowledge

st.title("Knowledge base")

with st.form("upload", clear_on_submit=True):
    files = st.file_uploader(
        "Add documents", type=[s.lstrip(".") for s in SUPPORTED], accept_multiple_files=True, key="kb_upload"
    )
    submitted = st.form_submit_button("Ingest", key="kb_ingest")
if submitted and files:
    progress = st.progress(0.0, text="Ingesting…")
    for number, upload in enumerate(files, 1):
        result = kb.ingest_upload(upload.name, upload.getvalue())
        if result.status == "error":
            st.error(f"**{result.source}** was not added: {result.error}")
        elif result.status == "unchanged":
            st.info(f"**{result.source}**: unchanged, skipped ({result.chunks} chunks already stored)")
        else:
            st.success(f"**{result.source}**: {result.status}, {result.chunks} chunks")
        progress.progress(number / len(files), text=f"{number}/{len(files)} files")

docs = kb.documents()
st.subheader(f"{len(docs)} documents · {kb.chunk_count()} chunks")
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
    if st.button("Delete document", key="kb_delete", type="secondary"):
        kb.delete(choice.doc_id)
        st.success(f"Deleted {choice.source}")
        st.rerun()

st.subheader("Test search")
query = st.text_input("Query", key="kb_query", placeholder="e.g. my money hasn't come back")
if query:
    for rank, p in enumerate(kb.search(query, k=5), 1):
        where = f"{p.title} › {p.heading}" if p.heading else p.title
        st.markdown(f"**{rank}. {where}** · score {p.score:.3f} · found by {', '.join(p.retrievers)}")
        st.caption(f"{p.source} · chunk {p.chunk}")
        st.text(p.text[:500])
