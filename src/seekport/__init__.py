"""seekport: an OpenAI- and DeepSeek-compatible gateway for DeepSeek-family models.

``from seekport import Client, AsyncClient`` imports the SDK on first use only, so the server
and the CLI do not pay for it (and a client-only install needs nothing else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from seekport.sdk import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from seekport import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'seekport' has no attribute {name!r}")
