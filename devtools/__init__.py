"""Development tools: local servers that speak the LLM providers' wire protocols."""
