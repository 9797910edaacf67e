"""Shared objects, built once per server process and reused by every session and page."""

from __future__ import annotations

import streamlit as st

from backends.base import Backend
from backends.registry import BACKENDS, backend_class, make_backend
from chatbot.access.auth import AdminAuth
from chatbot.access.tokens import SessionTokens, load_or_create_key
from chatbot.access.throttle import SignInThrottle
from common.settings import Settings
from chatbot.services import Services, build_services

__all__ = ["BACKENDS", "backend_class", "get_auth", "get_backend", "get_services", "get_session_tokens",
           "get_settings"]


def _secrets() -> dict:
    # st.secrets raises when no secrets file exists; no file simply means no secrets.
    try:
        return {key: st.secrets[key] for key in st.secrets}
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return {}


@st.cache_resource(show_spinner=False)
def get_settings() -> Settings:
    return Settings.load(secrets=_secrets())


@st.cache_resource(show_spinner="Loading the knowledge base and the embedding model…")
def get_services() -> Services:
    return build_services(get_settings())


@st.cache_resource(show_spinner=False)
def get_auth() -> AdminAuth:
    """The admin password, its wrong attempts counted in the conversations' Redis (shared by every process)."""
    settings = get_settings()
    store = get_services().store
    return AdminAuth(settings.path("admin", ".keep").parent, settings.admin_password,
                     throttle=SignInThrottle(lambda: store.client))


@st.cache_resource(show_spinner=False)
def get_session_tokens() -> SessionTokens:
    """Sign-in tokens for the browser cookie, signed with this data directory's key."""
    settings = get_settings()
    store = get_services().store
    key = load_or_create_key(settings.path("admin", ".keep").parent)
    return SessionTokens(key, lambda: store.client, lifetime=settings.admin_session_hours * 3600)


@st.cache_resource(show_spinner="Connecting the model backend…", max_entries=8)
def get_backend(name: str, model: str = "", model_path: str = "", adapter_path: str = "") -> Backend:
    """One backend object per choice, shared across sessions (clients are thread-safe)."""
    return make_backend(name, get_settings(), model or None, model_path=model_path, adapter_path=adapter_path)
