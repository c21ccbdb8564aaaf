"""The HTTP server: the Exosphere v0 API over this package's engine (imported only when serving)."""

from .app import create_app

__all__ = ["create_app"]
