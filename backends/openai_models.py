"""Which Chat Completions parameters an OpenAI model accepts, decided by its name in one table.

OpenAI's reasoning models (the o-series: o1, o3, o4-mini...; and the gpt-5 family, gpt-5-chat
included) refuse `max_tokens` (400 `unsupported_parameter`: "Use 'max_completion_tokens'
instead") and any `temperature` but the default 1 (400 `unsupported_value`). Source: the error
bodies the API returns, as reported publicly (e.g. teilomillet/gollm#33 for o1 and o3-mini,
griptape-ai/ComfyUI-Griptape#312 for gpt-5, cline/cline#341 for o1-mini's temperature).
Every other model, and every OpenAI-compatible server (vLLM, llama.cpp), keeps `max_tokens`,
which they all understand.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelRules:
    """How a model takes the reply's token limit, and whether it takes a temperature."""

    token_limit: str = "max_tokens"  # the parameter name: "max_tokens" or "max_completion_tokens"
    temperature: bool = True  # False: the parameter is left out (the model uses its default, 1)


CHAT = ModelRules()
REASONING = ModelRules("max_completion_tokens", temperature=False)

# Name prefixes, matched from the start of the model name (after any "provider/" part); the
# longest match wins, so a more specific line can override its family.
RULES: dict[str, ModelRules] = {
    "o1": REASONING,
    "o3": REASONING,
    "o4": REASONING,
    "gpt-5": REASONING,
    "codex-mini": REASONING,
}


def rules_for(model: str) -> ModelRules:
    """The rules for `model` ("o3-mini", "gpt-5-mini-2025-08-07", "openai/o1"); CHAT when no line matches."""
    name = model.rsplit("/", 1)[-1].strip().lower()
    matches = [prefix for prefix in RULES if name.startswith(prefix)]
    return RULES[max(matches, key=len)] if matches else CHAT


def generation_params(model: str, temperature: float, max_tokens: int) -> dict[str, float | int]:
    """The token limit and temperature parameters of a request to `model`, as it accepts them."""
    rules = rules_for(model)
    params: dict[str, float | int] = {rules.token_limit: max_tokens}
    if rules.temperature:
        params["temperature"] = temperature
    return params
