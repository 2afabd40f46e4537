"""Persistence behind Protocols: ``sql`` (durable, SQLAlchemy async) and ``kv`` (ephemeral)."""
