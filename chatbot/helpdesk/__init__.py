"""Help desks the assistant works inside: Chatwoot, through its agent-bot webhook and its API."""
