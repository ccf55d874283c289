"""Domain errors. The API maps each to one HTTP status in a single place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.model import Upload


class DomainError(Exception):
    """Base class: a rule of the domain refused the request."""


class InvalidInput(DomainError):
    """The caller sent something the rules reject (a 4xx, never a retry)."""


class NotFound(DomainError):
    """The thing asked for does not exist (or is not the caller's to see)."""


class Conflict(DomainError):
    """The request is valid but the upload's state does not allow it (already completed, ...)."""


class AlreadyHeld(DomainError):
    """The caller already holds this content: nothing needs uploading."""

    def __init__(self, held: Upload, upload_id: str) -> None:
        super().__init__("content already stored for this owner")
        self.held = held
        self.upload_id = upload_id
