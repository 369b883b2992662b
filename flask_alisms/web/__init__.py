"""The web layer: JSON API, end-user pages and admin panel, wired by :func:`create_blueprint`."""

from __future__ import annotations

from .blueprint import create_blueprint
from .http import ApiError

__all__ = ["ApiError", "create_blueprint"]
