"""The API keys of the HTTP API, over the conversations' Redis (built once per server process)."""

from __future__ import annotations

import streamlit as st

from chatbot.access.api_keys import ApiKeys
from ui.services import get_services


@st.cache_resource(show_spinner=False)
def get_api_keys() -> ApiKeys:
    store = get_services().store
    return ApiKeys(lambda: store.client)
