"""Entry point: `streamlit run app.py`. Builds shared services once and routes to the pages."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import streamlit as st  # noqa: E402

from chatbot.store.server import ephemeral_storage_warning  # noqa: E402
from common.errors import ConfigurationError  # noqa: E402
from ui.auth import render_account  # noqa: E402
from ui.services import get_auth, get_services, get_settings  # noqa: E402

st.set_page_config(page_title="Support desk assistant", page_icon=":material/support_agent:", layout="wide")

# Settings are checked first: one that is refused stops the app with its name and what it accepts,
# never a traceback (nothing is cached, so the next reload reads the fixed settings).
try:
    get_settings()
except ConfigurationError as exc:
    problems = getattr(exc, "problems", None) or [str(exc)]
    st.error("**The app cannot start: fix these settings in `.streamlit/secrets.toml` or the environment, "
             "then reload.**\n\n" + "\n".join(f"- {problem}" for problem in problems), icon=":material/settings:")
    st.stop()

# Build the heavy parts before any page renders; cached for the life of the server.
get_services()
get_auth()
warning = ephemeral_storage_warning(get_settings())
if warning:
    st.warning(warning, icon=":material/cloud_off:")

# (section, file, title, icon, URL path); a page file that is not there is left out of the menu.
PAGES = [
    ("Support", "views/chat.py", "Chat", ":material/chat:", None),
    ("Support", "views/history.py", "History", ":material/history:", "history"),
    ("Support", "views/handoff.py", "Handoff queue", ":material/support_agent:", "handoff"),
    ("Support", "views/knowledge_base.py", "Knowledge base", ":material/menu_book:", "knowledge"),
    ("Insights", "views/stats.py", "Stats", ":material/monitoring:", "stats"),
    ("Admin", "views/prompts.py", "Prompts", ":material/edit_note:", "prompts"),
    ("Admin", "views/fine_tuning.py", "Training", ":material/model_training:", "training"),
    ("Admin", "views/api_keys.py", "API keys", ":material/key:", "api-keys"),
    ("Admin", "views/webhooks.py", "Webhooks", ":material/webhook:", "webhooks"),
]
HERE = os.path.dirname(os.path.abspath(__file__))
sections: dict[str, list] = {}
for section, path, title, icon, url_path in PAGES:
    if os.path.exists(os.path.join(HERE, path)):
        sections.setdefault(section, []).append(
            st.Page(path, title=title, icon=icon, url_path=url_path, default=path == "views/chat.py")
        )
page = st.navigation(sections)
render_account()  # the role, and signing in or out, under the menu on every page
page.run()
