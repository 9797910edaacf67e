"""The conversation store over Redis, the stored message record and what is computed from it."""
