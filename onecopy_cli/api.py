"""ApiClient: the onecopy HTTP API, and the presigned PUTs and GETs of the bucket, over one
requests Session; every failure becomes an exception whose text can be shown to a person.

API calls carry `Authorization: Bearer <token>` from the client's Credentials; the presigned
bucket URLs never do (they carry their own signature, and S3 refuses a request with both).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

import requests
from requests.adapters import HTTPAdapter

from onecopy_cli import __version__

if TYPE_CHECKING:
    from onecopy_cli.credentials import Credentials

DEFAULT_API_URL = "http://127.0.0.1:3000"
USER_AGENT = f"onecopy-cli/{__version__}"
# (connect, read) seconds. The read timeout is the gap between bytes of an answer, not the
# duration of a PUT: a large body can take as long as it needs.
TIMEOUT = (5.0, 60.0)
DOWNLOAD_CHUNK = 1024 * 1024
ADMINS_ONLY = "admins only: sign in as a member of the admins group (`onecopy whoami` shows yours)"


class CliError(Exception):
    """Anything that went wrong in a way a person can act on; str() is the message to show."""


class ApiError(CliError):
    """The API answered with an error status."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


class NotSignedIn(CliError):
    """No usable sign-in for this API (none cached, expired beyond refresh, or refused):
    main() exits with EXIT_NOT_SIGNED_IN."""


class Unreachable(CliError):
    """Nothing answered at the address: refused, unknown host, or timed out."""

    def __init__(self, what: str, url: str, why: str, hint: str = "") -> None:
        super().__init__(f"cannot reach the {what} at {url} ({why}){hint}")
        self.what = what
        self.url = url
        self.why = why


class StorageError(CliError):
    """The bucket refused a presigned PUT (or, with operation="download", a presigned GET)."""

    def __init__(self, status: int, code: str, message: str, *, operation: str = "upload") -> None:
        self.status = status
        self.code = code
        self.message = message
        self.operation = operation
        super().__init__(_explain_storage_error(status, code, message, operation))

    @property
    def expired(self) -> bool:
        """The presigned URL outlived its expiry: a fresh URL would be accepted."""
        return self.status == 403 and "expired" in self.message.lower()


@dataclass(frozen=True, slots=True)
class UploadSlot:
    """201: the upload exists and waits for exactly one PUT of the declared bytes."""

    upload_id: str
    url: str
    headers: dict[str, str]
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class AlreadyStored:
    """409: the caller already holds this content; the API recorded a DUPLICATE upload."""

    upload_id: str
    message: str
    held: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MultipartSlot:
    """201 for an upload in parts: ask for part URLs, PUT every part, then complete."""

    upload_id: str
    part_size: int
    part_count: int
    expires_at: str | None = None


@dataclass(frozen=True, slots=True)
class PartSlot:
    """Where and how to PUT one part: exactly these headers (Content-Length is signed)."""

    part_number: int
    url: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class HeldPart:
    """A part the bucket already holds for a multipart upload."""

    part_number: int
    etag: str
    size: int


class Api(Protocol):
    """The calls commands make: ApiClient over HTTP, or a fake in the unit tests."""

    def create_upload(
        self, *, filename: str, size: int, content_type: str, sha256: str, multipart: bool = False
    ) -> UploadSlot | MultipartSlot | AlreadyStored: ...

    def put_object(
        self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes
    ) -> None: ...

    def presign_parts(self, upload_id: str, part_numbers: Sequence[int]) -> list[PartSlot]: ...

    def put_part(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> str:
        """PUT one part; returns the ETag the bucket answered with."""
        ...

    def list_parts(self, upload_id: str) -> list[HeldPart]: ...

    def complete_upload(
        self, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> dict[str, Any]: ...

    def get_upload(self, upload_id: str, *, wait: int = 0) -> dict[str, Any]: ...

    def get_metadata(self, identifier: str) -> dict[str, Any]: ...

    def get_download(self, identifier: str) -> dict[str, Any]: ...

    def download(self, url: str) -> Iterator[bytes]:
        """GET a presigned URL: the body, a chunk at a time."""
        ...

    def get_stats(self) -> dict[str, Any]: ...

    def get_health(self) -> dict[str, Any]: ...

    def list_hashes(self, *, limit: int, token: str | None = None) -> dict[str, Any]: ...

    def list_uploads(
        self,
        *,
        limit: int,
        status: str | None = None,
        prefix: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]: ...

    def delete_upload(self, upload_id: str) -> None: ...

    def erase_owner(self, sub: str) -> dict[str, Any]: ...

    def close(self) -> None: ...


class ApiClient:
    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        session: requests.Session | None = None,
        pool_size: int = 10,
        credentials: Credentials | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        # One connection per concurrent upload, to the API and to the bucket alike.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(pool_size, 10))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, json: Any = None, ok: Iterable[int] = (200,)
    ) -> requests.Response:
        """One API call; any status outside `ok` raises ApiError with the API's message.

        A 401 is retried once with renewed credentials: the authorizer refused the call before
        any function ran, so even a POST is safe to send again.
        """
        url = f"{self.base_url}{path}"
        token = self.credentials.bearer() if self.credentials is not None else None
        response = self._send(method, url, json, token)
        if response.status_code == 401 and self.credentials is not None and token is not None:
            response.close()
            token = self.credentials.renew(token)
            response = self._send(method, url, json, token)
        if response.status_code == 401:
            whom = f" as {self.credentials.describe()}" if self.credentials is not None else ""
            raise NotSignedIn(
                f"the API at {self.base_url} refused the call{whom} (HTTP 401): run `onecopy login`"
            )
        if response.status_code not in set(ok):
            body = _json_or_none(response)
            if response.status_code == 403 and path.startswith("/admin/"):
                raise ApiError(403, ADMINS_ONLY, body)
            raise ApiError(response.status_code, _api_message(response, body), body)
        return response

    def _send(self, method: str, url: str, json: Any, token: str | None) -> requests.Response:
        # Per request, not on the session: the session also carries the presigned bucket calls.
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            return self.session.request(method, url, json=json, headers=headers, timeout=TIMEOUT)
        except requests.ConnectionError as exc:
            raise Unreachable("onecopy API", self.base_url, _why(exc), _API_HINT) from exc
        except requests.Timeout as exc:
            raise Unreachable("onecopy API", self.base_url, "no answer in time", _API_HINT) from exc

    def create_upload(
        self, *, filename: str, size: int, content_type: str, sha256: str, multipart: bool = False
    ) -> UploadSlot | MultipartSlot | AlreadyStored:
        payload: dict[str, Any] = {
            "filename": filename,
            "size": size,
            "content_type": content_type,
            "sha256": sha256,
        }
        if multipart:
            payload["multipart"] = True
        response = self.request("POST", "/uploads", json=payload, ok=(201, 409))
        body = _json_object(response)
        try:
            if response.status_code == 409:
                return AlreadyStored(
                    upload_id=str(body["upload_id"]),
                    message=str(body.get("message", "already stored")),
                    held=dict(body.get("held") or {}),
                )
            # The server decides: above its threshold it answers with parts even unasked.
            if body.get("multipart") is not None:
                plan = body["multipart"]
                return MultipartSlot(
                    upload_id=str(body["upload_id"]),
                    part_size=int(plan["part_size"]),
                    part_count=int(plan["part_count"]),
                    expires_at=body.get("expires_at"),
                )
            upload = body["upload"]
            return UploadSlot(
                upload_id=str(body["upload_id"]),
                url=str(upload["url"]),
                headers={str(k): str(v) for k, v in upload["headers"].items()},
                expires_at=body.get("expires_at"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ApiError(response.status_code, f"unexpected answer from the API: {exc}") from exc

    def presign_parts(self, upload_id: str, part_numbers: Sequence[int]) -> list[PartSlot]:
        path = f"/uploads/{quote(upload_id, safe='')}/parts"
        response = self.request("POST", path, json={"part_numbers": list(part_numbers)})
        body = _json_object(response)
        try:
            return [
                PartSlot(
                    part_number=int(part["part_number"]),
                    url=str(part["url"]),
                    headers={str(k): str(v) for k, v in part["headers"].items()},
                )
                for part in body["parts"]
            ]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ApiError(response.status_code, f"unexpected answer from the API: {exc}") from exc

    def list_parts(self, upload_id: str) -> list[HeldPart]:
        response = self.request("GET", f"/uploads/{quote(upload_id, safe='')}/parts")
        body = _json_object(response)
        try:
            return [
                HeldPart(int(part["part_number"]), str(part["etag"]), int(part["size"]))
                for part in body["parts"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(response.status_code, f"unexpected answer from the API: {exc}") from exc

    def complete_upload(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> dict[str, Any]:
        payload = {"parts": [{"part_number": n, "etag": etag} for n, etag in parts]}
        path = f"/uploads/{quote(upload_id, safe='')}/complete"
        return _json_object(self.request("POST", path, json=payload, ok=(200, 202)))

    def get_upload(self, upload_id: str, *, wait: int = 0) -> dict[str, Any]:
        """The upload's view; with ``wait`` seconds, once it is done or they have passed."""
        path = f"/uploads/{quote(upload_id, safe='')}"
        return _json_object(self.request("GET", f"{path}?wait={wait}" if wait else path))

    def get_metadata(self, identifier: str) -> dict[str, Any]:
        return _json_object(self.request("GET", f"/metadata/{quote(identifier, safe='')}"))

    def get_download(self, identifier: str) -> dict[str, Any]:
        return _json_object(self.request("GET", f"/download/{quote(identifier, safe='')}"))

    def get_stats(self) -> dict[str, Any]:
        return _json_object(self.request("GET", "/admin/stats"))

    def get_health(self) -> dict[str, Any]:
        """GET /admin/health: the queues, dead letters, and the last reconciliation and
        collection, with what needs an operator's attention."""
        return _json_object(self.request("GET", "/admin/health"))

    def list_hashes(self, *, limit: int, token: str | None = None) -> dict[str, Any]:
        query: dict[str, str | int] = {"limit": limit}
        if token is not None:
            query["last_evaluated_key"] = token
        return _json_object(self.request("GET", f"/admin/hashes?{urlencode(query)}"))

    def list_uploads(
        self,
        *,
        limit: int,
        status: str | None = None,
        prefix: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the caller's uploads, newest first: {"items", "last_evaluated_key"}."""
        query: dict[str, str | int] = {"limit": limit}
        if status is not None:
            query["status"] = status
        if prefix is not None:
            query["prefix"] = prefix
        if token is not None:
            query["last_evaluated_key"] = token
        # A space in a prefix goes as %20, never as "+", which not every server reads as a space.
        return _json_object(self.request("GET", f"/uploads?{urlencode(query, quote_via=quote)}"))

    def delete_upload(self, upload_id: str) -> None:
        """204: a finished upload is deleted; a pending one is aborted (it stays, REJECTED)."""
        self.request("DELETE", f"/uploads/{quote(upload_id, safe='')}", ok=(204,)).close()

    def erase_owner(self, sub: str) -> dict[str, Any]:
        """One bounded pass of erasing an owner's uploads: that pass's counts, and `done`."""
        return _json_object(self.request("POST", f"/admin/owners/{quote(sub, safe='')}/erase"))

    # --- the bucket --------------------------------------------------------------------------

    def put_object(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> None:
        """PUT the bytes to a presigned URL with exactly the headers it was signed for.

        An iterable body must have a len() equal to its Content-Length: requests then streams it
        with that length instead of switching to chunked encoding, which S3 refuses.
        """
        self._put(url, headers, body)

    def put_part(self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes) -> str:
        response = self._put(url, headers, body)
        etag = response.headers.get("ETag")
        if not etag:
            raise StorageError(response.status_code, "", "the storage answered without an ETag")
        return etag

    def _put(
        self, url: str, headers: dict[str, str], body: Iterable[bytes] | bytes
    ) -> requests.Response:
        host = _origin(url)
        try:
            response = self.session.put(url, data=body, headers=headers, timeout=TIMEOUT)
        except requests.ConnectionError as exc:
            raise Unreachable("storage endpoint", host, _why(exc)) from exc
        except requests.Timeout as exc:
            raise Unreachable("storage endpoint", host, "no answer in time") from exc
        if not 200 <= response.status_code < 300:
            code, message = _s3_error(response.text)
            raise StorageError(response.status_code, code, message or response.reason or "")
        return response

    def download(self, url: str) -> Iterator[bytes]:
        host = _origin(url)
        try:
            response = self.session.get(url, stream=True, timeout=TIMEOUT)
        except requests.ConnectionError as exc:
            raise Unreachable("storage endpoint", host, _why(exc)) from exc
        except requests.Timeout as exc:
            raise Unreachable("storage endpoint", host, "no answer in time") from exc
        with response:
            if not 200 <= response.status_code < 300:
                code, message = _s3_error(response.text)
                raise StorageError(
                    response.status_code,
                    code,
                    message or response.reason or "",
                    operation="download",
                )
            try:
                yield from response.iter_content(DOWNLOAD_CHUNK)
            except requests.RequestException as exc:
                raise Unreachable("storage endpoint", host, f"cut off: {_why(exc)}") from exc


# --- helpers -------------------------------------------------------------------------------------

_API_HINT = (
    ". Is it running, at that address? (`make run` starts the local stack; --api or "
    "ONECOPY_API_URL point elsewhere.)"
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _why(exc: BaseException) -> str:
    """The root cause of a connection failure in a few words ("Connection refused")."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror)
        current = current.__cause__ or current.__context__
    text = str(exc)
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "refused" in text.lower():
        return "connection refused"
    match = re.search(r"\[Errno -?\d+\] ([^')]+)", text)
    return match.group(1) if match else text


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_object(response: requests.Response) -> dict[str, Any]:
    body = _json_or_none(response)
    if not isinstance(body, dict):
        raise ApiError(response.status_code, "the API answered with something other than JSON")
    return body


def _api_message(response: requests.Response, body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]:
        return str(body["message"])
    text = response.text.strip()
    if text and len(text) <= 200 and "<" not in text:
        return text
    return response.reason or "the API refused the request"


def _s3_error(text: str) -> tuple[str, str]:
    code = re.search(r"<Code>([^<]*)</Code>", text)
    message = re.search(r"<Message>([^<]*)</Message>", text)
    return (code.group(1) if code else "", message.group(1) if message else "")


_STORAGE_HINTS = {
    "BadDigest": "the file changed while it was being uploaded (its SHA-256 no longer matches)",
    "XAmzContentSHA256Mismatch": "the file changed while it was being uploaded",
    "IncompleteBody": "the file got shorter while it was being uploaded",
    "PreconditionFailed": "this upload slot was already filled; start a new upload",
    "SignatureDoesNotMatch": "the storage refused the upload's signature "
    "(did the file change size or type?)",
}


def _explain_storage_error(status: int, code: str, message: str, operation: str) -> str:
    if operation == "upload" and code in _STORAGE_HINTS:
        return f"{_STORAGE_HINTS[code]} (HTTP {status} {code})"
    if code == "AccessDenied" and "expired" in message.lower():
        return f"the {operation} URL expired before the {operation} started (HTTP {status})"
    detail = ": ".join(part for part in (code, message) if part)
    return f"the storage refused the {operation} (HTTP {status}{' ' + detail if detail else ''})"
