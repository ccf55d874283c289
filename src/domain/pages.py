"""Opaque page tokens for the hash list.

A token carries the last hash of a page and an HMAC over it, so clients cannot edit it into some
other key (or another table's key), and a tampered or foreign token is refused as bad input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

from domain.errors import InvalidInput
from domain.model import is_sha256

_VERSION = 1
_PURPOSE = b"onecopy/hashes-page/v1\x00"


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE + payload, hashlib.sha256).digest()[:16]


def encode_page_token(last_sha256: str, secret: bytes) -> str:
    payload = json.dumps({"v": _VERSION, "after": last_sha256}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _mac(secret, payload)).decode().rstrip("=")


def decode_page_token(token: str, secret: bytes) -> str:
    """The hash after which the next page starts; InvalidInput for anything not minted here."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput("last_evaluated_key is not a valid page token") from None
    payload, mac = raw[:-16], raw[-16:]
    if len(raw) <= 16 or not hmac.compare_digest(mac, _mac(secret, payload)):
        raise InvalidInput("last_evaluated_key is not a valid page token")
    data = json.loads(payload)
    after = data.get("after") if isinstance(data, dict) else None
    if not isinstance(after, str) or not is_sha256(after) or data.get("v") != _VERSION:
        raise InvalidInput("last_evaluated_key is not a valid page token")
    return after
