"""Templates: the shipped set, the system-prompt builder, variables, few-shot, chain of thought, validation."""

from __future__ import annotations

import re

import pytest

from common.errors import PromptValidationError
from chatbot.prompts.template import compile_text, fill, parse_template
from chatbot.prompts.template_yaml import to_yaml
from chatbot.prompts.library import (
    SECTION_ORDER, FewShotSelector, PromptLibrary, is_complex, shipped_templates,
)
from common.types import Passage

ROUTED = ("billing", "technical", "account", "general", "escalation")

PASSAGES = [
    Passage(text="Refunds reach the card in 5-10 business days.", source="refunds.md", title="Refunds",
            chunk=0, score=0.9, heading="Timing"),
    Passage(text="Reset the device by holding the button.", source="reset.md", title="Factory reset", chunk=2,
            score=0.7),
]

TOPICS = """\
name: topics
description: one example per topic
few_shot_k: 2
variables:
  company: Nimbus Home
system:
  role: You help customers of {company}.
examples:
  - user: My parcel never arrived and the tracking has not moved for a week.
    assistant: Sorry about the parcel.
  - user: I was charged twice on my credit card this month.
    assistant: Sorry about the double charge.
  - user: The camera keeps going offline from the Wi-Fi.
    assistant: Let's reconnect the camera.
  - user: How do I reset my password? The email never comes.
    assistant: Let's reset the password.
  - user: Can I pay for {company} Plus with PayPal?
    assistant: Yes, {company} takes PayPal.
"""


def tags_in_order(system: str) -> list[str]:
    return [t for t in re.findall(r"^<([a-z_]+)>$", system, re.M) if t in SECTION_ORDER]


def test_every_shipped_template_parses_and_the_routed_ones_exist():
    texts = shipped_templates()
    assert set(ROUTED) | {"summariser", "classifier", "handoff"} <= set(texts)
    for name, text in texts.items():
        template = parse_template(text, expected_name=name)
        assert template.role.strip() and template.description
    for name in ROUTED:
        template = parse_template(texts[name])
        assert template.examples, f"{name} ships no few-shot examples"
        assert template.knowledge and "[1]" in template.response_format


def test_sections_come_in_the_fixed_order_and_empty_ones_are_left_out():
    library = PromptLibrary()
    rendered = library.render(
        "technical", passages=PASSAGES, summary="- Customer: camera offline since Monday",
        customer={"account_tier": "plus", "history": ["2 earlier contacts", "last: firmware"]},
        query="my camera is offline",
    )
    order = tags_in_order(rendered.system)
    assert order == [s for s in SECTION_ORDER if s in order]
    assert order == list(SECTION_ORDER)  # the technical template fills every section
    assert '<passage id="1" source="refunds.md" title="Refunds > Timing">' in rendered.system
    assert '<passage id="2" source="reset.md" title="Factory reset">' in rendered.system
    assert "<customer>\nAccount tier: plus\nHistory: 2 earlier contacts; last: firmware\n</customer>" in rendered.system
    bare = library.render("general", passages=[], query="hello")
    assert tags_in_order(bare.system) == [
        s for s in SECTION_ORDER if s not in ("customer", "conversation_summary", "reasoning")
    ]
    assert "No passage matched this message." in bare.system


def test_summariser_and_classifier_render_without_knowledge():
    library = PromptLibrary()
    summary = library.render("summariser", passages=[], summary="")
    assert "Summarise the conversation" in summary.system and "<knowledge>" not in summary.system
    assert summary.temperature == 0.0 and summary.name == "summariser"
    classifier = library.render("classifier", passages=[], variables={"intents": "- billing: payments\n- other"})
    assert "Intents:\n- billing: payments\n- other" in classifier.system
    assert '{"intent": "<one intent name, or unknown>"' in classifier.system  # {{ }} became literal braces


def test_unknown_name_falls_back_to_general_and_get_returns_the_production_version():
    library = PromptLibrary()
    template, version = library.get("no-such-template")
    assert template.name == "general" and version == 1
    assert library.get("classifier")[0].variables["intents"]


def test_variables_come_from_defaults_then_customer_then_explicit_values():
    library = PromptLibrary()
    role = lambda r: r.system.split("</role>")[0]  # noqa: E731
    assert "answer the customer" in role(library.render("billing", passages=[]))
    by_customer = library.render("billing", passages=[], customer={"customer_name": "Ana Lima"})
    assert "answer Ana Lima" in role(by_customer)
    explicit = library.render("billing", passages=[], customer={"customer_name": "Ana"},
                              variables={"customer_name": "Mr Ortiz", "company": "Acme"})
    assert "billing support assistant of Acme" in role(explicit) and "answer Mr Ortiz" in role(explicit)


def test_passages_and_summary_are_data_never_template_syntax():
    library = PromptLibrary()
    tricky = Passage(text="Codes look like {company} or {{x}} or }", source="a.md", title="A", chunk=0, score=1.0)
    system = library.render("general", passages=[tricky], summary="Customer typed {customer_name}").system
    assert "Codes look like {company} or {{x}} or }" in system
    assert "Customer typed {customer_name}" in system


def test_compile_and_fill_are_plain_lookups():
    parts, errors = compile_text("Hi {name}, {{literal}} {name}")
    assert not errors
    assert fill(parts, {"name": "Ana"}) == "Hi Ana, {literal} Ana"
    # Attribute access and indexing are not variables: nothing is evaluated.
    for text in ("{name.__class__}", "{name[0]}", "{0}", "{a!r}"):
        assert compile_text(text)[1], text


def test_few_shot_picks_the_examples_closest_to_the_message(embedder):
    template = parse_template(TOPICS)
    selector = FewShotSelector(embedder)
    assert selector.select(template, "the delivery is late, where is my package?") [0] == 0
    assert selector.select(template, "I can't sign in, password reset link missing")[0] == 3
    top = selector.select(template, "two identical payments showed up on my card")
    assert top[0] == 1 and len(top) == 2
    # The same choice from a vector computed once by the turn.
    vector = embedder.embed_one("two identical payments showed up on my card")
    assert selector.select(template, "", query_vector=vector) == top


class CountingEmbedder:
    """The real embedder, counting how often a query is embedded."""

    def __init__(self, inner):
        self.inner, self.single, self.batches = inner, 0, 0

    def embed(self, texts, batch_size=64):
        self.batches += 1
        return self.inner.embed(texts, batch_size)

    def embed_one(self, text):
        self.single += 1
        return self.inner.embed_one(text)


def test_render_reuses_the_turns_query_vector_and_caches_example_vectors(embedder):
    counting = CountingEmbedder(embedder)
    library = PromptLibrary(embedder=counting)
    query = "my thermostat shows error E42 after an update"
    vector = embedder.embed_one(query)
    first = library.render("technical", passages=[], query=query, query_vector=vector)
    second = library.render("technical", passages=[], query=query, query_vector=vector)
    assert counting.single == 0 and counting.batches == 1  # examples embedded once, the query never
    assert first.examples == second.examples and first.examples[0] == 1  # the firmware/E42 example
    assert "E42 means the update did not finish" in first.system
    library.render("technical", passages=[], query=query)
    assert counting.single == 1  # no vector given: the query is embedded once


def test_few_shot_without_an_embedder_uses_word_overlap_and_k_zero_means_none():
    template = parse_template(TOPICS)
    assert FewShotSelector().select(template, "password reset email")[0] == 3
    assert FewShotSelector().select(template, "password reset email", k=0) == []
    few = parse_template(TOPICS.replace("few_shot_k: 2", "few_shot_k: 9"))
    assert FewShotSelector().select(few, "anything") == [0, 1, 2, 3, 4]  # all, in the admin's order


def test_chain_of_thought_on_off_and_auto_for_complex_messages():
    library = PromptLibrary()
    technical = library.render("technical", passages=[], query="camera offline")
    assert technical.chain_of_thought and "<thinking>" in technical.system and "Steps:\n1." in technical.system
    account = library.render("account", passages=[], query="I have three questions? And more? Really?")
    assert not account.chain_of_thought and "<reasoning>" not in account.system
    simple = library.render("billing", passages=[], query="Where is my invoice?")
    assert not simple.chain_of_thought and "<reasoning>" not in simple.system
    complex_query = ("I was charged twice in May, then my refund for the returned doorbell never arrived? "
                     "And why did my plan change to yearly?")
    assert is_complex(complex_query)
    rendered = library.render("billing", passages=[], query=complex_query)
    assert rendered.chain_of_thought and "<reasoning>" in rendered.system


def test_rendered_identity_is_the_production_versions_hash():
    library = PromptLibrary()
    rendered = library.render("general", passages=[])
    info = library.version("general")
    assert (rendered.name, rendered.version, rendered.hash) == ("general", 1, info.sha256)
    assert len(rendered.hash) == 64


def test_to_yaml_round_trips():
    template = parse_template(shipped_templates()["technical"])
    again = parse_template(to_yaml(template))
    assert again == template


# -- validation: the admin is told what and where, and nothing is saved ----------------------------

def edited(old: str, new: str, name: str = "billing") -> str:
    text = shipped_templates()[name]
    assert old in text
    return text.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("old,new,needle,message", [
    ("and plans, using", "and {plans}, using", "{plans}", "unknown variable {plans} in system.role"),
    ("and plans, using", "and {plans, using", "{plans", "'{' is never closed"),
    ("and plans, using", "and plans}, using", "plans}", "a single '}' has no matching '{'"),
    ("temperature: 0.2", "temperature: 3", "temperature: 3", "'model.temperature' must be between 0 and 2"),
    ("max_tokens: 600", "max_tokens: many", "max_tokens: many", "'model.max_tokens' must be an integer"),
    ("temperature: 0.2", "temprature: 0.2", "temprature", "unknown field 'temprature' in model"),
    ("chain_of_thought: auto", "chain_of_thought: sometimes", "chain_of_thought", "must be true, false or auto"),
    ("  - user: I was charged twice", "  - usr: I was charged twice", "usr:", "unknown field 'usr' in example 1"),
    ("name: billing", "name: technical", "name: technical", "cannot be renamed"),
    # The second `role:` (where `tone:` was) is the duplicate: the line above the tone text.
    ("  tone: |", "  role: |", "Calm, precise", "'role' appears twice"),
    # The unclosed list is noticed where the next key starts.
    ("tags: [billing, payments, refunds, invoices]", "tags: [billing, payments", "model:",
     "YAML syntax error: expected ',' or ']'"),
])
def test_errors_name_the_line(old, new, needle, message):
    text = edited(old, new)
    with pytest.raises(PromptValidationError) as caught:
        parse_template(text, expected_name="billing")
    assert message in str(caught.value)
    expected = line_of(text, needle) - (needle == "Calm, precise")
    assert caught.value.line == expected, str(caught.value)
    assert str(caught.value).startswith(f"Line {caught.value.line}: ")


def test_placeholder_errors_in_examples_and_folded_text_point_at_their_line():
    text = edited("  - user: My payment keeps failing", "  - user: My {device} payment keeps failing")
    with pytest.raises(PromptValidationError) as caught:
        parse_template(text)
    assert caught.value.line == line_of(text, "{device}") and "examples[4].user" in str(caught.value)
    folded = edited("  tone: |\n    Calm, precise and reassuring: money questions make people anxious.",
                    "  tone: >\n    Calm, precise\n    and {mood}: money questions make people anxious.")
    with pytest.raises(PromptValidationError) as caught:
        parse_template(folded)
    assert caught.value.line == line_of(folded, "{mood}")


def test_missing_role_and_non_mapping_are_refused():
    with pytest.raises(PromptValidationError, match="'system.role' is required"):
        parse_template("name: x\nsystem:\n  tone: calm\n")
    with pytest.raises(PromptValidationError, match="a template is a YAML mapping"):
        parse_template("- just\n- a list\n")
    with pytest.raises(PromptValidationError, match="empty"):
        parse_template("  \n")
