"""Ephemeral shared state (memory / Redis). Arrives with rate limits and the cache (#4, #5)."""
