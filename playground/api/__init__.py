"""The OpenAI-compatible API (/v1) served beside the UI: see openai_routes.py and docs/api.md."""
from playground.api.openai_routes import openai_routes

__all__ = ["openai_routes"]
