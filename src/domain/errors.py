"""Domain errors. The API maps each to one HTTP status in a single place."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a rule of the domain refused the request."""


class InvalidInput(DomainError):
    """The caller sent something the rules reject (a 4xx, never a retry)."""


class NotFound(DomainError):
    """The thing asked for does not exist (or is not the caller's to see)."""


class Conflict(DomainError):
    """The request is valid but the upload's state does not allow it (already completed, ...)."""
