"""LLM backends: one small class per provider, all speaking adapters.base.Backend."""
