"""The training page through Streamlit's AppTest: the lock, datasets, a real job's progress, adapters."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
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


def open_tab(at: AppTest) -> int:
    """The index of the tab the browser is told to show."""
    def walk(node):
        for child in getattr(node, "children", {}).values():
            proto = getattr(child, "proto", None)
            if proto is not None and proto.DESCRIPTOR.name == "Block" and proto.HasField("tab_container"):
                return proto.tab_container.default_tab_index
            found = walk(child)
            if found is not None:
                return found
        return None

    return walk(at._tree)


def chart_data(chart) -> list:
    """The data frames a Vega-Lite chart on the page draws from."""
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    return [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]


def job_picker_label(at: AppTest) -> str:
    """The job picker's label as the browser shows it: the browser keeps the last label it was sent."""
    picker = at.selectbox(key="job_select")
    assert picker.proto.set_value and picker.proto.raw_value == picker.options[picker.index]
    return picker.proto.raw_value


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


def test_the_token_histogram_reads_from_short_to_long(app_env):
    at = unlocked()
    histogram = next(c for c in at.get("vega_lite_chart") if '"mark": {"type": "bar"}' in c.proto.spec)
    assert '"sort": null' in histogram.proto.spec  # drawn in the data's order, not sorted as text
    labels = list(chart_data(histogram)[0]["tokens"])
    starts = [int(label.split("-")[0]) for label in labels]
    assert len(starts) > 2 and starts == sorted(starts)


@pytest.mark.parametrize("source,key,name", [("chat", "ds_chat_file", "empty.jsonl"),
                                             ("pairs", "ds_table_file", "empty.csv")])
def test_an_empty_file_says_it_has_no_rows(app_env, source, key, name):
    at = unlocked()
    at.radio(key="ds_source").set_value(source).run()
    at.file_uploader(key=key).set_value((name, b"", "text/plain")).run()
    assert not at.exception
    assert any(e.value == f"{name}: the file has no rows" for e in at.error)
    assert not any("the rest is kept" in e.value for e in at.error)
    assert not [m for m in at.metric if m.label in ("Records read", "Rejected")]


def test_examples_that_would_lose_their_whole_reply_are_reported_before_launch(app_env):
    at = unlocked()
    at.button(key="make_tiny_model").click().run()  # a real tokenizer measures the examples
    long_prompt = " ".join(["My order NH-4829173 shipped on the 3rd, tracking 1Z84J2X0391, and it has sat at the "
                            "depot since."] * 4)
    lines = [json.dumps({"messages": [{"role": "user", "content": long_prompt if i < 6 else "Where is my parcel?"},
                                      {"role": "assistant", "content": f"I opened a trace, ref T-{i}."}]})
             for i in range(8)]
    at.radio(key="ds_source").set_value("chat").run()
    at.file_uploader(key="ds_chat_file").set_value(("orders.jsonl", "\n".join(lines).encode(), "text/plain")).run()
    at.checkbox(key="ds_drop_long").uncheck()  # truncate over-long examples rather than leave them out
    at.number_input(key="spec_max_seq_length").set_value(64).run()
    assert not at.exception
    assert any(w.value.startswith("6 examples are longer than the max length (64 tokens) and will be left out")
               for w in at.warning)
    assert metric(at, "Examples") == "8"
    assert int(metric(at, "Train")) + int(metric(at, "Validation")) == 2


def test_the_chosen_tab_stays_open_across_reruns(app_env):
    at = unlocked()
    assert at.session_state["train_tab"] == "Dataset" and open_tab(at) == 0
    at.session_state["train_tab"] = "Adapters"  # what a click on the tab sends
    at.run()
    at.radio(key="ds_source").set_value("bitext").run()  # any rerun
    assert at.session_state["train_tab"] == "Adapters" and open_tab(at) == 3


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

    trained = int(metric(at, "Train"))
    at.session_state["train_tab"] = "New job"
    at.button(key="launch_job").click().run()
    assert any("started: follow it in the Jobs tab" in s.value for s in at.success)
    assert at.session_state["train_tab"] == "Jobs" and open_tab(at) == 2  # the tab the message points to
    job_id = at.selectbox(key="job_select").value
    assert at.button(key="launch_job").disabled  # one job at a time
    assert "state **running**" in panel_text(at)
    assert job_picker_label(at).endswith("running")
    # The job is still importing its libraries: it has no step count yet, and says so.
    assert at.get("progress")[0].proto.text.startswith("Starting…")
    assert at.dataframe[1].value.loc[0, "progress"] == "Starting…"

    seen = []
    at = wait_page(at, lambda a: seen.extend(p.proto.text for p in a.get("progress"))
                   or "state **completed**" in panel_text(a))
    assert all(re.match(r"(Starting…|Step \d+/\d+ )", text) for text in seen), seen
    assert any("Completed (exit code 0)" in s.value for s in at.success)
    assert at.session_state["train_tab"] == "Jobs" and open_tab(at) == 2
    assert job_picker_label(at).endswith("completed")
    assert any(c.value.startswith(f"Trains on {trained} examples (0 left out for length) · ") for c in at.caption)
    loss_chart = next(c for c in at.get("vega_lite_chart") if "eval loss" in c.proto.spec)
    losses = pd.concat(chart_data(loss_chart))
    evals = losses[losses["series"] == "eval loss"]
    assert len(evals) >= 3 and not evals["loss"].isna().any()  # steps 10, 20 and 30
    assert '"point"' in loss_chart.proto.spec  # each evaluation is drawn, even a lone one
    assert float(metric(at, "Train loss")) < 8
    assert metric(at, "Eval loss") != "-"
    assert any(f"job {job_id} completed (exit code 0)" in c.value for c in at.code)  # the log tail
    jobs_table = at.dataframe[1].value
    assert list(jobs_table["job"]) == [job_id] and list(jobs_table["state"]) == ["completed"]

    # The adapter is listed with its comparison, and chatting with it switches the chat to the Local backend.
    assert at.selectbox(key="adapter_select").options == [job_id]
    runs = at.dataframe[2].value
    assert runs.loc[0, "method"] == "lora" and runs.loc[0, "trainable params"] == 32768
    assert runs.loc[0, "examples"] == trained and runs.loc[0, "left out for length"] == 0
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
    assert job_picker_label(at).endswith("stopped")
    assert at.session_state["train_tab"] == "Jobs" and open_tab(at) == 2
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
