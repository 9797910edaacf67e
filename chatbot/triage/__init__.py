"""Triage of a customer message: sentiment, priority and escalation to a human."""
