"""Prompt templates written as YAML: a template built in code, or a new one's starting text, as an admin edits it."""

from __future__ import annotations

from typing import Any

import yaml

from chatbot.prompts.template import TEXT_SECTIONS, PromptTemplate


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # prompt YAML never has anchors or aliases: a repeated value is written out again


def _str(dumper: yaml.SafeDumper, value: str):
    # Multi-line prompt text reads best, and diffs line by line, as a literal block.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(template: PromptTemplate) -> str:
    """The template as the YAML an admin edits."""
    data: dict[str, Any] = {"name": template.name, "description": template.description}
    if template.tags:
        data["tags"] = list(template.tags)
    data["model"] = {"temperature": template.temperature, "max_tokens": template.max_tokens}
    if template.repetition_penalty != 1.0:
        data["model"]["repetition_penalty"] = template.repetition_penalty
    if template.no_repeat_ngram_size:
        data["model"]["no_repeat_ngram_size"] = template.no_repeat_ngram_size
    data["chain_of_thought"] = template.chain_of_thought
    data["few_shot_k"] = template.few_shot_k
    data["knowledge"] = template.knowledge
    if template.variables:
        data["variables"] = dict(template.variables)
    data["system"] = {k: getattr(template, k) for k in TEXT_SECTIONS if getattr(template, k).strip()}
    if template.examples:
        data["examples"] = [{"user": e["user"], "assistant": e["assistant"]} for e in template.examples]
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def skeleton(name: str) -> str:
    """A starting text for a new template."""
    return (
        f"name: {name}\n"
        "description: What this template is for\n"
        "tags: []\n"
        "model:\n  temperature: 0.2\n  max_tokens: 600\n"
        "chain_of_thought: false\n"
        "few_shot_k: 2\n"
        "variables:\n  company: Nimbus Home\n"
        "system:\n"
        "  role: |\n    You are the support assistant of {company}.\n"
        "  tone: Warm, concise and professional.\n"
        "examples: []\n"
    )
