"""The bundled local model on the pages: its name and label, and its one-time preparation shown as it runs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from backends.bundled import BUNDLED_LABEL, BUNDLED_MODEL, bundled_dir, ensure_bundled_model, is_bundled, is_ready

__all__ = ["BUNDLED_LABEL", "BUNDLED_MODEL", "is_bundled", "prepare_local_model"]


def prepare_local_model(name_or_path: str, data_dir: str | Path) -> str:
    """A model folder for a model setting; the bundled model is converted first (once), its steps shown live."""
    if not is_bundled(name_or_path):
        return name_or_path
    if is_ready(data_dir):
        return str(bundled_dir(data_dir))
    with st.status(f"Preparing {BUNDLED_MODEL} (once; a minute or two on a CPU)…", expanded=True) as status:
        folder = ensure_bundled_model(data_dir, progress=status.write)
        status.update(label=f"{BUNDLED_MODEL} is ready", state="complete", expanded=False)
    return str(folder)
