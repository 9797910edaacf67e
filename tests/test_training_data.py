"""Training data, settings, estimates and scores: what an engineer checks before launching a job."""

from __future__ import annotations

import json

import pytest

from common.errors import ConfigurationError, DatasetError
from training import datasets as ds
from training.evaluation import rouge_l, summarise
from training.spec import TrainingSpec, default_method, field_help


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from training.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def chat_line(*turns: tuple[str, str]) -> str:
    return json.dumps({"messages": [{"role": r, "content": c} for r, c in turns]})


# ---- datasets -------------------------------------------------------------------------------------


def test_sample_dataset_is_clean_nimbus_home_support():
    result = ds.load_chat_jsonl(ds.SAMPLE_CHAT)
    assert result.issues == []
    assert 40 <= result.records <= 80
    # Multi-turn conversations give one example per assistant reply, each with its context.
    assert len(result.examples) > result.records
    text = json.dumps(result.examples)
    assert "Nimbus" in text and "support@nimbushome.example" in text
    multi = [e for e in result.examples if len(e["prompt"]) > 1]
    assert multi and all(e["prompt"][-1]["role"] == "user" for e in result.examples)


def test_broken_chat_lines_are_named_by_line_and_field_and_the_rest_is_kept():
    good = chat_line(("user", "My plug is offline"), ("assistant", "Hold the button for 5 seconds."))
    lines = [
        good,
        '{"messages": [{"role": "user", "content": "hi"}',  # line 2: cut off
        json.dumps({"conversation": []}),  # line 3: wrong field
        chat_line(("user", "Refund?"), ("assistant", "   ")),  # line 4: empty turn
        chat_line(("customer", "Hello"), ("assistant", "Hi")),  # line 5: unknown role
        json.dumps({"messages": [{"role": "user"}]}),  # line 6: no content
        chat_line(("user", "Anyone there?")),  # line 7: nothing to learn
        "",
        good,
    ]
    result = ds.load_chat_jsonl("\n".join(lines).encode(), name="upload.jsonl")
    found = {(i.line, i.field) for i in result.errors}
    assert (2, None) in found and "not valid JSON" in str(result.errors[0])
    assert (3, "messages") in found
    assert (4, "messages[1].content") in found
    assert (5, "messages[0].role") in found
    assert (6, "messages[0].content") in found
    assert (7, "messages") in found
    assert len(result.examples) == 2 and result.records == 8
    with pytest.raises(DatasetError) as caught:
        result.raise_for_errors()
    assert "upload.jsonl" in str(caught.value) and "line 2" in str(caught.value)
    assert caught.value.line == 2


def test_text_that_is_not_utf8_names_the_line():
    with pytest.raises(DatasetError, match="line 2 is not UTF-8"):
        ds.load_chat_jsonl(b'{"messages": []}\n\xff\xfe broken\n', name="latin1.jsonl")


def test_instruction_response_table_with_a_column_mapping():
    result = ds.load_pairs(ds.SAMPLE_PAIRS, "csv", instruction="customer_question", response="agent_answer")
    assert result.issues == [] and len(result.examples) == 20
    first = result.examples[0]
    assert first["prompt"] == [{"role": "user", "content": "Why was my card declined with code P-201?"}]
    assert first["completion"][0]["content"].startswith("Code P-201 means")

    with pytest.raises(DatasetError) as caught:
        ds.load_pairs(ds.SAMPLE_PAIRS, "csv", instruction="question", response="agent_answer")
    message = str(caught.value)
    assert "'question'" in message and "customer_question" in message  # names what exists


def test_empty_cells_are_reported_with_their_csv_line():
    table = "question,answer,context\nWhere is my order?,Check Account > Orders.,\nHow much is Plus?,,\n"
    table += 'Can I pause?,"Yes, for 1 to 3 months.",Plus plan\n'
    result = ds.load_pairs(table.encode(), "csv", "question", "answer", input_column="context", name="t.csv")
    assert [(i.line, i.field) for i in result.errors] == [(3, "answer")]
    assert len(result.examples) == 2
    assert result.examples[1]["prompt"][0]["content"] == "Can I pause?\n\nPlus plan"


def test_pairs_from_jsonl():
    rows = [{"q": "Do you ship to Canada?", "a": "Yes, in 5 to 8 business days."}, {"q": "Hi", "a": ""}]
    result = ds.load_pairs("\n".join(json.dumps(r) for r in rows).encode(), "jsonl", "q", "a", name="p.jsonl")
    assert len(result.examples) == 1 and result.errors[0].line == 2 and result.errors[0].field == "a"


def test_stored_conversations_keep_only_agent_approved_replies_with_context():
    conversations = [
        {"id": "c1", "messages": [
            {"role": "user", "content": "My camera is offline", "approved": False},
            {"role": "assistant", "content": "Is the light blinking orange?", "approved": True},
            {"role": "user", "content": "Yes"},
            {"role": "assistant", "content": "", "approved": False},  # a reply cut off by an error
            {"role": "notice", "content": "Escalated to a person"},
            {"role": "assistant", "content": "Draft the agent did not send", "approved": False},
            {"role": "user", "content": "Still offline"},
            {"role": "assistant", "content": "Unplug it for 10 seconds.", "approved": True},
        ]},
        {"id": "c2", "messages": [{"role": "user", "content": "Hello"},
                                  {"role": "assistant", "content": "Hi there"}]},  # never approved
    ]
    result = ds.from_conversations(conversations)
    replies = [e["completion"][0]["content"] for e in result.examples]
    assert replies == ["Is the light blinking orange?", "Unplug it for 10 seconds."]
    assert [m["content"] for m in result.examples[1]["prompt"]][-1] == "Still offline"
    assert len(result.examples[1]["prompt"]) == 5
    assert all("approved" not in m for e in result.examples for m in e["prompt"])
    assert [(i.record, i.level) for i in result.issues] == [("conversation c1", "warning")]


def test_build_measures_tokens_drops_over_long_and_splits(tokenizer):
    result = ds.load_chat_jsonl(ds.SAMPLE_CHAT)
    built = ds.build(result, tokenizer, max_seq_length=120, val_fraction=0.1, seed=7)
    assert built.exact_tokens
    over = [i for i in built.issues if i.level == "warning"]
    assert over and all("over the 120-token limit" in str(i) and str(i).startswith("line ") for i in over)
    assert max(built.lengths) <= 120
    assert len(built.train) + len(built.validation) == len(result.examples) - len(over)
    assert len(built.validation) == round(0.1 * (len(built.train) + len(built.validation)))
    s = built.stats
    assert s["min"] <= s["median"] <= s["p95"] <= s["max"] and s["count"] == len(built.lengths)
    # The same seed gives the same split.
    again = ds.build(result, tokenizer, max_seq_length=120, val_fraction=0.1, seed=7)
    assert again.validation == built.validation


def test_build_without_a_tokenizer_estimates_and_an_empty_set_is_an_error():
    result = ds.load_chat_jsonl(ds.SAMPLE_CHAT)
    built = ds.build(result, None, 1024)
    assert not built.exact_tokens and built.stats["count"] == len(result.examples)
    broken = ds.load_chat_jsonl(b"not json\n", name="bad.jsonl")
    with pytest.raises(DatasetError, match="no usable examples.*line 1"):
        ds.build(broken, None, 1024)


def test_prepared_files_round_trip_and_bad_lines_are_refused(tmp_path):
    result = ds.load_chat_jsonl(ds.SAMPLE_CHAT)
    path = ds.write_jsonl(result.examples[:3], tmp_path / "train.jsonl")
    assert ds.read_examples(path) == [{"prompt": e["prompt"], "completion": e["completion"]}
                                      for e in result.examples[:3]]
    path.write_text(path.read_text() + '{"prompt": [{"role": "user", "content": "x"}]}\n')
    with pytest.raises(DatasetError, match="line 4: missing field 'completion'"):
        ds.read_examples(path)


# ---- settings -------------------------------------------------------------------------------------


def test_defaults_follow_the_qlora_recipe_and_every_field_has_help():
    spec = TrainingSpec()
    assert (spec.method, spec.lora_r, spec.lora_alpha, spec.lora_dropout) == ("qlora", 16, 32, 0.05)
    assert spec.target_modules == "all-linear" and spec.learning_rate == 2e-4
    assert spec.lr_scheduler_type == "cosine" and spec.warmup_ratio > 0
    assert spec.bnb_4bit_quant_type == "nf4" and spec.bnb_4bit_use_double_quant
    assert all(field_help(name) for name in spec.to_dict())
    assert default_method(True) == "qlora" and default_method(False) == "lora"


def test_qlora_without_cuda_is_refused_plainly_and_lora_on_cpu_is_fine():
    spec = TrainingSpec(base_model="some/model", method="qlora")
    with pytest.raises(ConfigurationError, match="QLoRA needs a CUDA GPU"):
        spec.validate(cuda_available=False)
    assert spec.validate(cuda_available=True) is spec
    cpu = TrainingSpec(base_model="some/model", method="lora")
    assert cpu.problems(cuda_available=False) == []
    assert cpu.resolved_optim(False) == "adamw_torch"
    assert spec.resolved_optim(True) == "paged_adamw_8bit"


def test_validation_lists_every_problem_at_once():
    spec = TrainingSpec(base_model="", method="lora", lora_r=0, learning_rate=0, max_steps=0,
                        per_device_train_batch_size=0, target_modules="q_proj, 1bad", adapter_name="no spaces!")
    problems = spec.problems(cuda_available=False)
    text = " ".join(problems)
    for expected in ("base model", "rank", "Learning rate", "Max steps", "per_device_train_batch_size",
                     "1bad", "Adapter name"):
        assert expected in text
    with pytest.raises(ConfigurationError) as caught:
        spec.validate(False)
    assert "rank" in str(caught.value) and "Learning rate" in str(caught.value)


def test_spec_yaml_round_trip_and_unknown_keys(tmp_path):
    spec = TrainingSpec(base_model="/models/x", method="dora", lora_r=8, max_steps=40)
    path = spec.save(tmp_path / "job.yaml")
    assert TrainingSpec.load(path) == spec
    path.write_text("base_model: x\nlora_rank: 8\n")
    with pytest.raises(ConfigurationError, match="lora_rank"):
        TrainingSpec.load(path)
    path.write_text("base_model: x\nlora_r: eight\n")
    with pytest.raises(ConfigurationError, match="lora_r must be a int"):
        TrainingSpec.load(path)


def test_planned_steps():
    spec = TrainingSpec(per_device_train_batch_size=4, gradient_accumulation_steps=2, num_train_epochs=3)
    assert spec.planned_steps(57) == 24  # 15 batches -> 8 optimiser steps an epoch
    assert TrainingSpec(max_steps=30).planned_steps(57) == 30


# ---- estimates ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,targets", [("lora", "all-linear"), ("dora", "all-linear"),
                                            ("ia3", "all-linear"), ("lora", "q_proj,v_proj"),
                                            ("ia3", "k_proj,v_proj,down_proj")])
def test_trainable_parameter_estimate_matches_peft(tiny_model, method, targets):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from training.estimate import estimate
    from training.model_setup import peft_config

    spec = TrainingSpec(base_model=str(tiny_model), method=method, target_modules=targets)
    est = estimate(spec, cuda_available=False)
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    model = get_peft_model(base, peft_config(spec, base))
    assert (est.trainable_params, est.total_params) == model.get_nb_trainable_parameters()
    assert est.device == "cpu" and est.memory_bytes > 0


def test_a_7b_qlora_estimate_is_in_the_known_range(tmp_path):
    from transformers import LlamaConfig

    from training.estimate import estimate

    LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                vocab_size=32000).save_pretrained(tmp_path)
    qlora = estimate(TrainingSpec(base_model=str(tmp_path), per_device_train_batch_size=1, max_seq_length=512),
                     cuda_available=True)
    assert qlora.trainable_params == 39_976_960  # r=16 on every linear projection of a Llama-2-7B
    assert 0.5 < 100 * qlora.trainable_share < 0.7
    assert 4 < qlora.memory_gib < 8
    lora = estimate(TrainingSpec(base_model=str(tmp_path), method="lora", per_device_train_batch_size=1,
                                 max_seq_length=512), cuda_available=True)
    assert lora.memory_gib > 2.5 * qlora.memory_gib
    cpu = estimate(TrainingSpec(base_model=str(tmp_path), method="lora"), cuda_available=False)
    assert any("CPU" in w for w in cpu.warnings)


def test_an_unreadable_base_model_is_a_configuration_error(tmp_path):
    from training.estimate import estimate

    with pytest.raises(ConfigurationError, match="Cannot read the configuration"):
        estimate(TrainingSpec(base_model=str(tmp_path / "missing"), method="lora"), cuda_available=False)


# ---- scores ---------------------------------------------------------------------------------------


def test_rouge_l():
    assert rouge_l("Unplug the camera for 10 seconds", "unplug the camera for 10 seconds.") == 1.0
    assert rouge_l("completely different words", "unplug the camera") == 0.0
    assert rouge_l("", "anything") == 0.0
    # LCS "the cat on the mat" is 5 of 6 and 5 of 7 words: F1 = 2 * (5/6) * (5/7) / (5/6 + 5/7).
    score = rouge_l("the cat sat on the mat", "the cat was lying on the mat")
    assert score == pytest.approx(2 * (5 / 6) * (5 / 7) / (5 / 6 + 5 / 7))


def test_summary_averages_only_available_scores():
    rows = [{"rouge_l_base": 0.1, "rouge_l_adapter": 0.5}, {"rouge_l_base": 0.3, "rouge_l_adapter": 0.7}]
    assert summarise(rows) == {"rouge_l_base": 0.2, "rouge_l_adapter": 0.6, "similarity_base": None,
                               "similarity_adapter": None}


def test_json_lines_with_unicode_line_separators_inside_strings_load_whole(tmp_path):
    separator = "\u2028"  # valid unescaped inside a JSON string; not a line break in JSON Lines
    reply = f"Track it under Account > Orders.{separator}If it has not moved in 3 days, tell us."
    chat = json.dumps({"messages": [{"role": "user", "content": "Where is my parcel?"},
                                    {"role": "assistant", "content": reply}]}, ensure_ascii=False) + "\n"
    result = ds.load_chat_jsonl(chat, name="train.jsonl")
    assert result.issues == [] and len(result.examples) == 1
    assert result.examples[0]["completion"][0]["content"] == reply
    path = tmp_path / "train.jsonl"
    ds.write_jsonl([{"prompt": [{"role": "user", "content": "Where is my parcel?"}],
                     "completion": [{"role": "assistant", "content": reply}]}], path)
    assert ds.read_examples(path)[0]["completion"][0]["content"] == reply
