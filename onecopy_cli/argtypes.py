"""argparse `type=` converters whose errors read well in a usage message."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable


def count(maximum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not 1 <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be between 1 and {maximum}, not {value}")
        return value

    return convert


def positive(text: str) -> int:
    """A whole number of at least 1, with no upper bound."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def name_prefix(text: str) -> str:
    """The start of a filename, as the API takes it: 1 to 255 characters."""
    if not 1 <= len(text) <= 255:
        raise argparse.ArgumentTypeError(f"must be 1 to 255 characters long, not {len(text)}")
    return text


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_UPLOAD_ID_OR_SHA256 = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")


def upload_or_sha256(text: str) -> str:
    """An upload id (32 hex characters) or a content's SHA-256 (64), in lowercase."""
    value = text.strip().lower()
    if not _UPLOAD_ID_OR_SHA256.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"not an upload id (32 hex characters) or a SHA-256 (64 hex characters): {text!r}"
        )
    return value


def upload_id(text: str) -> str:
    value = text.strip().lower()
    if not _UPLOAD_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"not an upload id (32 hex characters, as printed by `onecopy upload`): {text!r}"
        )
    return value
