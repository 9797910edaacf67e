"""LLM backends: one small class per provider, all speaking backends.base.Backend."""
