"""Each remote provider's local protocol server and the product's backend on its real SDK client, for
tests that run the same scenario on every provider."""

from __future__ import annotations

from backends.anthropic_backend import AnthropicBackend
from backends.ollama_backend import OllamaBackend
from backends.openai_backend import OpenAIBackend
from devtools.servers.anthropic import AnthropicServer
from devtools.servers.ollama import OllamaServer
from devtools.servers.openai import OpenAIServer

KEY = "sk-test-2b9d71c4"
# provider -> (its server class, a backend on a started server: 5 s timeout, no retries)
PROVIDERS = {
    "openai": (OpenAIServer, lambda s: OpenAIBackend("gpt-4o-mini", api_key=KEY, base_url=s.base_url,
                                                      timeout=5.0, max_retries=0)),
    "anthropic": (AnthropicServer, lambda s: AnthropicBackend(api_key=KEY, base_url=s.base_url,
                                                             timeout=5.0, max_retries=0)),
    "ollama": (OllamaServer, lambda s: OllamaBackend(host=s.base_url, timeout=5.0, max_retries=0)),
}
