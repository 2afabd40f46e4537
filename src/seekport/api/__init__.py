"""HTTP edge (FastAPI). ``create_app(settings)`` is the composition root."""

from seekport.api.app import create_app

__all__ = ["create_app"]
