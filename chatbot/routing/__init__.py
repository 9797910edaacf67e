"""Intent routing: routes as data, the fitted classifier head, follow-ups and the LLM fallback."""
