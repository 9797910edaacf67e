"""Who may do what: agents work the desk, admins also change what the assistant knows and says."""

from __future__ import annotations

AGENT = "agent"
ADMIN = "admin"

# Actions only an admin may take. Everything else (chatting, reading the knowledge base, test
# search, browsing and resuming conversations, the stats) is open to agents.
ADMIN_ACTIONS = {
    "change_knowledge": "upload, delete or re-index documents",
    "edit_prompts": "edit, publish or roll back prompts",
    "train": "train and manage models",
    "delete_conversations": "delete conversations",
    "export_conversations": "export conversations",
    "manage_webhooks": "add, test, disable or delete webhook endpoints and replay deliveries",
    "manage_api_keys": "create and revoke API keys",
}


def allowed(role: str, action: str) -> bool:
    """Whether `role` may take `action`; an action nobody declared is refused."""
    if action in ADMIN_ACTIONS:
        return role == ADMIN
    raise KeyError(f"unknown action {action!r}")


def describe(action: str) -> str:
    """What the action does, in a few words, for "admins only" messages."""
    return ADMIN_ACTIONS[action]
