"""Local HTTP servers that speak the OpenAI, Anthropic and Ollama wire protocols.

Each server runs on 127.0.0.1 on a free port, records every request it receives
and is scripted per test or benchmark: the reply (sent in several pieces; blank or
empty too), how it ends (`finish`: complete, cut off at the token limit, refused),
a queue of failures to serve before succeeding, delays, a hang and a stream cut off
halfway.

    with OpenAIServer(reply="Hello there", failures=[429]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

The shared server is in `base`; each protocol has its own module (`openai`, `anthropic`, `ollama`).
"""
