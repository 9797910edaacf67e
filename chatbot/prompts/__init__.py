"""Prompt templates: YAML parsing, versioned storage and the system-prompt builder."""
