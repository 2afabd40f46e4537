"""Chat backends behind one Protocol: remote OpenAI-compatible upstreams and the local engine."""

from seekport.gateway.backends.base import BackendCall, CallStats, ChatBackend

__all__ = ["BackendCall", "CallStats", "ChatBackend"]
