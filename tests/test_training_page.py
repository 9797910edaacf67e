"""The training page through Streamlit's AppTest: the lock, datasets, a real job's progress, adapters."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import app_environment

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "train-the-bot"
WAIT = 300


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    from training.jobs import JobManager

    with app_environment(tmp_path_factory.mktemp("training-page"), CHATBOT_ADMIN_PASSWORD=PASSWORD) as data:
        yield data
        manager = JobManager(data)
        for status in manager.list():
            if status.running:
                manager.stop(status.id, grace=2)


def open_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "views" / "fine_tuning.py"), default_timeout=WAIT).run()


def unlocked() -> AppTest:
    at = open_page()
    at.text_input(key="admin_password_input").input(PASSWORD)
    at.button(key="admin_unlock").click().run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_the_page_is_locked_without_the_admin_password(app_env):
    at = open_page()
    assert [s.value for s in at.subheader] == ["Admin sign-in"]
    assert not at.title and not at.tabs
    at.text_input(key="admin_password_input").input("guess")
    at.button(key="admin_unlock").click().run()
    assert any("Wrong password" in e.value for e in at.error)
    assert not at.title


def test_dataset_tab_checks_uploads_and_shows_statistics(app_env):
    at = unlocked()
    assert at.title[0].value == "Training"
    assert [t.label for t in at.tabs] == ["Dataset", "New job", "Jobs", "Adapters"]
    # The shipped sample is the default source.
    assert metric(at, "Records read") == "60" and metric(at, "Rejected") == "0"
    assert int(metric(at, "Train")) + int(metric(at, "Validation")) == int(metric(at, "Examples"))
    assert metric(at, "median") != "0"
    assert at.dataframe[0].value.shape[0] == 10  # the preview

    at.radio(key="ds_source").set_value("chat").run()
    good = {"messages": [{"role": "user", "content": "Plug offline"}, {"role": "assistant", "content": "Reset it."}]}
    broken = "\n".join([json.dumps(good), '{"messages": [', json.dumps({"text": "hi"}), json.dumps(good)])
    at.file_uploader(key="ds_chat_file").set_value(("support.jsonl", broken.encode(), "application/jsonl")).run()
    assert not at.exception
    message = next(e.value for e in at.error if "left out" in e.value)
    assert "line 2" in message and "line 3" in message and "'messages'" in message
    assert metric(at, "Rejected") == "2" and metric(at, "Examples") == "2"

    at.radio(key="ds_source").set_value("pairs").run()
    at.checkbox(key="ds_table_sample").check().run()
    assert at.selectbox(key="ds_col_instruction").value == "customer_question"
    assert at.selectbox(key="ds_col_response").value == "agent_answer"
    assert metric(at, "Examples") == "20"


def wait_page(at: AppTest, predicate, timeout: float = WAIT) -> AppTest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at.run()
        assert not at.exception, at.exception
        if predicate(at):
            return at
        time.sleep(1)
    raise AssertionError("the page never showed the expected state")


def panel_text(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


@pytest.mark.slow
def test_launch_watch_stop_and_use_an_adapter_from_the_page(app_env):
    import torch

    at = unlocked()
    if not torch.cuda.is_available():
        assert any("QLoRA" in i.value and "CPU" in i.value for i in at.info)
    assert at.button(key="launch_job").disabled  # no base model yet
    at.button(key="make_tiny_model").click().run()
    assert at.text_input(key="train_base_model").value.endswith("tiny-model")
    assert at.selectbox(key="spec_method").value == ("qlora" if torch.cuda.is_available() else "lora")
    if torch.cuda.is_available():
        at.selectbox(key="spec_method").set_value("lora")
    for key, value in {"spec_max_steps": 30, "spec_learning_rate": 1e-2, "spec_gradient_accumulation_steps": 1,
                       "spec_logging_steps": 2, "spec_eval_steps": 10, "spec_save_steps": 10,
                       "spec_compare_prompts": 2, "spec_compare_max_new_tokens": 12}.items():
        at.number_input(key=key).set_value(value)
    at.run()
    assert metric(at, "trainable parameters") == "32,768"
    assert "%" in metric(at, "share of all parameters")
    assert not at.button(key="launch_job").disabled

    at.button(key="launch_job").click().run()
    assert any("started" in s.value for s in at.success)
    job_id = at.selectbox(key="job_select").value
    assert at.button(key="launch_job").disabled  # one job at a time
    assert "state **running**" in panel_text(at)
    assert at.get("progress"), "a running job shows a progress bar"

    at = wait_page(at, lambda a: "state **completed**" in panel_text(a))
    assert any("Completed (exit code 0)" in s.value for s in at.success)
    assert float(metric(at, "Train loss")) < 8
    assert metric(at, "Eval loss") != "-"
    assert any(f"job {job_id} completed (exit code 0)" in c.value for c in at.code)  # the log tail
    jobs_table = at.dataframe[1].value
    assert list(jobs_table["job"]) == [job_id] and list(jobs_table["state"]) == ["completed"]

    # The adapter is listed with its comparison, and chatting with it switches the chat to the Local backend.
    assert at.selectbox(key="adapter_select").options == [job_id]
    runs = at.dataframe[2].value
    assert runs.loc[0, "method"] == "lora" and runs.loc[0, "trainable params"] == 32768
    comparison = at.dataframe[3].value
    assert len(comparison) == 2 and {"base model", "adapter", "ROUGE-L adapter"} <= set(comparison.columns)
    at.button(key="adapter_chat").click().run()
    assert at.session_state["chat_backend"] == "local"
    assert at.session_state["local_adapter_path"].endswith(job_id)
    assert Path(at.session_state["local_model_path"]).name == "tiny-model"

    # A long second job: watch it start, then stop it from the page.
    at = unlocked()
    at.text_input(key="train_base_model").input(str(app_env / "training" / "tiny-model"))
    for key, value in {"spec_max_steps": 5000, "spec_learning_rate": 1e-2, "spec_logging_steps": 1,
                       "spec_save_steps": 1000}.items():
        at.number_input(key=key).set_value(value)
    at.run()
    at.button(key="launch_job").click().run()
    at = wait_page(at, lambda a: any("Step " in p.proto.text and not p.proto.text.startswith("Step 0/")
                                     for p in a.get("progress")))
    at.button(key="job_stop").click().run()
    assert "state **stopped**" in panel_text(at)
    assert any("Stopped (exit code 143)" in w.value for w in at.warning)
    assert at.button(key="job_resume")  # it checkpointed on the way out
    assert not at.button(key="launch_job").disabled

    # Deleting a finished job asks first.
    stopped = at.selectbox(key="job_select").value
    at.button(key="job_delete").click().run()
    assert any("for good?" in w.value for w in at.warning)
    at.button(key="job_delete_cancel").click().run()
    assert stopped in list(at.dataframe[1].value["job"])
    at.button(key="job_delete").click().run()
    at.button(key="job_delete_confirm").click().run()
    assert not at.exception
    assert stopped not in list(at.dataframe[1].value["job"])
