"""Webhooks out: events of the desk, signed per the Standard Webhooks spec, delivered by a worker."""
