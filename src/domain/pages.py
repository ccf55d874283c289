"""Opaque page tokens: for the hash list, and for each owner's list of uploads.

A token carries where the next page starts and an HMAC over it, so clients cannot edit it into
some other key (or another table's key), and a tampered or foreign token is refused as bad
input. An uploads token is bound to its owner too: another owner cannot use it, even to learn
where in the index someone else's uploads lie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from domain.errors import InvalidInput
from domain.model import is_sha256, is_upload_id

_VERSION = 1
_HASHES = b"onecopy/hashes-page/v1\x00"
_UPLOADS = b"onecopy/uploads-page/v1\x00"


def _mac(secret: bytes, purpose: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, purpose + payload, hashlib.sha256).digest()[:16]


def _encode(data: dict[str, Any], purpose: bytes, secret: bytes) -> str:
    payload = json.dumps({"v": _VERSION, **data}, separators=(",", ":")).encode()
    raw = payload + _mac(secret, purpose, payload)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str, purpose: bytes, secret: bytes) -> dict[str, Any]:
    invalid = InvalidInput("last_evaluated_key is not a valid page token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    payload, mac = raw[:-16], raw[-16:]
    if len(raw) <= 16 or not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        raise invalid
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        raise invalid
    return data


def encode_page_token(last_sha256: str, secret: bytes) -> str:
    return _encode({"after": last_sha256}, _HASHES, secret)


def decode_page_token(token: str, secret: bytes) -> str:
    """The hash after which the next page starts; InvalidInput for anything not minted here."""
    after = _decode(token, _HASHES, secret).get("after")
    if not isinstance(after, str) or not is_sha256(after):
        raise InvalidInput("last_evaluated_key is not a valid page token")
    return after


def _owner_purpose(owner: str) -> bytes:
    return _UPLOADS + owner.encode() + b"\x00"


def encode_uploads_token(owner: str, position: tuple[str, str], secret: bytes) -> str:
    created_at, upload_id = position
    return _encode({"at": created_at, "id": upload_id}, _owner_purpose(owner), secret)


def decode_uploads_token(token: str, owner: str, secret: bytes) -> tuple[str, str]:
    """Where the owner's next page of uploads starts: (created_at, upload_id)."""
    data = _decode(token, _owner_purpose(owner), secret)
    created_at, upload_id = data.get("at"), data.get("id")
    if not isinstance(created_at, str) or not isinstance(upload_id, str):
        raise InvalidInput("last_evaluated_key is not a valid page token")
    try:
        datetime.fromisoformat(created_at)
    except ValueError:
        raise InvalidInput("last_evaluated_key is not a valid page token") from None
    if not is_upload_id(upload_id):
        raise InvalidInput("last_evaluated_key is not a valid page token")
    return created_at, upload_id
