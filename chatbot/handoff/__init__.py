"""The handoff queue: escalated conversations waiting for a person, claimed, answered and closed by agents."""
