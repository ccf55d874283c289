"""The AWS emulator: moto behind a strict proxy that closes the gaps where moto is laxer than AWS.

Every client (the handlers, the worker loop, the CLI, tests) talks to the proxy. It:

- serializes requests: one forwarded request at a time, so each emulator request is atomic as in
  AWS (moto's threaded server is not, and a conditional write would race);
- verifies presigned S3 requests (signature, expiry, every signed header), so the signed
  Content-Length, If-None-Match and x-amz-checksum-sha256 bind as they do on S3;
- rejects a PUT whose body does not match its x-amz-checksum-sha256 (400 BadDigest), and has
  moto keep the checksum when it does;
- enforces CopyObject's x-amz-copy-source-if-match / -if-none-match and If-None-Match, which moto
  ignores;
- emulates SQS long polling outside the lock, so a waiting ReceiveMessage blocks no one;
- enforces IAM (onecopy_local.iam): each caller is the principal whose access key signed the
  request (a presigned URL's signer, when it is used), every request is mapped to the actions and
  resources AWS would authorize, and a denial is answered as the service answers it. S3's rule
  that a missing key is 403, not 404, without s3:ListBucket is applied too. Unsigned requests
  reach only moto's control plane (/moto-api/), CORS preflights and Cognito's public operations.
  A resource encrypted with a customer-managed KMS key asks the caller for kms:Decrypt or
  kms:GenerateDataKey on it, as S3, DynamoDB and SQS do (which key: onecopy_local.kms.MotoKeys,
  from moto's own record of each resource's encryption settings).

GetObject If-Match and PutObject If-None-Match are passed through: moto honours both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import itertools
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from tempfile import SpooledTemporaryFile
from typing import IO, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit
from xml.sax.saxutils import escape

from moto.core.request import (
    PRESERVED_HEADER_NAMES_ENVIRON_KEY,
    environ_key_for_header,
    should_preserve_original_header_name,
)
from moto.server import DomainDispatcherApplication, ThreadedMotoServer, create_backend_app
from werkzeug.exceptions import InternalServerError

from onecopy_local import iam, kms, moto_speed, sigv4
from onecopy_local._http import (
    HOP_BY_HOP,
    LOGGER,
    LoopbackHandler,
    LoopbackServer,
    RequestBodyError,
)

log = logging.getLogger(LOGGER)

DEFAULT_CREDENTIALS = {iam.ADMIN_ACCESS_KEY: iam.ADMIN_SECRET_KEY}
_SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger request bodies wait on disk, not in memory
_BLOCK = 1024 * 1024
_LONG_POLL_INTERVAL = 0.05
_SLOW_SECONDS = 5.0  # an emulator request this slow is worth a line in the log
_NOT_FORWARDED = HOP_BY_HOP | {"content-length", "expect"}

# Told of every IAM decision on a function's request: (principal, action, resource, decision),
# the decision being iam.Policy.decide's. Least-privilege tests learn from it which grant is used.
Audit = Callable[[iam.Principal, str, str, str], None]


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class _Response:
    """moto's answer to one in-process request, read as http.client's response is read."""

    def __init__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        body: Iterable[bytes],
        chunks: Iterator[bytes] | None = None,
    ) -> None:
        code, _, self.reason = status.partition(" ")
        self.status = int(code)
        self._headers = headers
        self._body = body  # closed when done, as WSGI asks
        self._chunks = chunks if chunks is not None else iter(body)
        self._chunk = b""
        self._at = 0  # read so far of _chunk: a 1 GiB body is one chunk, never copied whole again

    def getheaders(self) -> list[tuple[str, str]]:
        return list(self._headers)

    def getheader(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self._headers if k.lower() == wanted), default)

    def read(self, size: int = -1) -> bytes:
        pieces = []
        while size != 0:
            if self._at >= len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._chunk, self._at = chunk, 0
                continue
            end = len(self._chunk) if size < 0 else self._at + size
            piece = self._chunk[self._at : end]
            self._at += len(piece)
            size = size - len(piece) if size > 0 else size
            pieces.append(piece)
        return b"".join(pieces)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class _Upstream:
    """moto's WSGI application, called in this process one request at a time.

    The environ is the one werkzeug's development server (moto's own server) would build for the
    same request, so moto sees no difference; skipping the loopback hop (a connection, a thread
    and an HTTP parse per request) halves the emulator's CPU per request.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.lock = threading.Lock()

    def send(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: IO[bytes] | None = None,
        length: int = 0,
    ) -> _Response:
        """Run one request; call with ``lock`` held. moto builds the whole response before it
        returns, so once this returns the request's effects are complete and the lock can go."""
        started = time.monotonic()
        reply: list[Any] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], *_: Any
        ) -> Callable[[bytes], object]:
            reply[:] = [status, response_headers]
            return _no_write

        environ = self._environ(method, target, headers, body, length)
        try:
            body_iter = self.app(environ, start_response)
        except Exception:
            # What moto's server answers when moto raises (an operation it does not implement).
            log.exception("emulator: moto failed on %s %s", method, target)
            body_iter = InternalServerError()(environ, start_response)
        chunks = iter(body_iter)
        if not reply:  # a WSGI app may start the response with its first chunk
            chunks = itertools.chain([next(chunks, b"")], chunks)
        if (elapsed := time.monotonic() - started) > _SLOW_SECONDS:
            log.warning("emulator: %s %s took %.1f s", method, target, elapsed)
        return _Response(reply[0], reply[1], body_iter, chunks)

    def _environ(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: IO[bytes] | None,
        length: int,
    ) -> dict[str, Any]:
        # As werkzeug.serving.WSGIRequestHandler.make_environ builds it (werkzeug 3).
        url = urlsplit(target)
        path = f"/{url.netloc}{url.path}" if not url.scheme and url.netloc else url.path
        environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body if body is not None else io.BytesIO(),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "SERVER_SOFTWARE": "onecopy-emulator",
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": _wsgi_str(unquote(path)),
            "QUERY_STRING": _wsgi_str(url.query),
            "REQUEST_URI": _wsgi_str(target),
            "RAW_URI": _wsgi_str(target),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": 0,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        for name, value in headers:
            if "_" in name:
                continue
            key = name.upper().replace("-", "_")
            value = value.replace("\r\n", "")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = f"HTTP_{key}"
                if key in environ:
                    value = f"{environ[key]},{value}"
            environ[key] = value
        if body is not None or length:
            environ["CONTENT_LENGTH"] = str(length)
        # ... and as moto's request handler adds to it: headers with an underscore (S3 metadata
        # keys may have one) under their original spelling, never standing in for a dashed one.
        dashed = {environ_key_for_header(n) for n, _ in headers if "_" not in n}
        names: dict[str, str] = {}
        values: dict[str, list[str]] = {}
        for name, value in headers:
            if not should_preserve_original_header_name(name):
                continue
            key = environ_key_for_header(name)
            if key in dashed:
                continue
            names.setdefault(key, name)
            values.setdefault(key, []).append(value.replace("\r\n", ""))
        for key, key_values in values.items():
            environ[key] = ",".join(key_values)
        environ[PRESERVED_HEADER_NAMES_ENVIRON_KEY] = names
        return environ

    def read(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
    ) -> _Reply:
        with self.lock:
            response = self.send(
                method, target, headers, io.BytesIO(body) if body else None, len(body)
            )
        return _Reply(response.status, response.getheaders(), response.read())


def _no_write(data: bytes) -> object:
    raise NotImplementedError("moto returns its bodies; it never calls write()")


def _wsgi_str(value: str) -> str:
    # PEP 3333: environ strings carry the request's bytes as latin-1 code points.
    return value.encode().decode("latin-1")


class ProxyServer(LoopbackServer):
    def __init__(
        self,
        port: int,
        upstream: _Upstream,
        *,
        region: str,
        principals: Iterable[iam.Principal],
        enforce_iam: bool,
        audit: Audit | None = None,
    ) -> None:
        self.upstream = upstream
        self.region = region
        self.enforce_iam = enforce_iam
        self.audit = audit
        self._principals: dict[str, iam.Principal] = {}
        self._principals_lock = threading.Lock()
        self.set_principals(principals)
        super().__init__(port, StrictProxyHandler, "emulator")

    def set_principals(self, principals: Iterable[iam.Principal]) -> None:
        by_key = {p.access_key: p for p in principals}
        with self._principals_lock:
            self._principals = by_key

    def principals(self) -> dict[str, iam.Principal]:
        """The principals by access key; a request keeps the snapshot it started with."""
        with self._principals_lock:
            return self._principals


class StrictProxyHandler(LoopbackHandler):
    server: ProxyServer

    def do_GET(self) -> None:
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    def _serve(self) -> None:
        self.begin()
        try:
            self._proxy()
        finally:
            self.end()

    def _proxy(self) -> None:
        split = urlsplit(self.path)
        if self.command == "OPTIONS" and _is_json_preflight(split.path, self.headers):
            self._answer_preflight()
            return
        query = sigv4.query_pairs(split.query)
        headers = self.header_values()
        service = _service(headers, query)
        with SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            digest = hashlib.sha256()
            length = 0
            try:
                for chunk in self.body_chunks():
                    spool.write(chunk)
                    digest.update(chunk)
                    length += len(chunk)
            except RequestBodyError as exc:
                self.close_connection = True
                self._s3_error(400, "IncompleteBody", str(exc))
                return
            spool.seek(0)
            has_body = length > 0 or "content-length" in headers
            forward = [
                (name, value)
                for name, value in self.headers.items()
                if name.lower() not in _NOT_FORWARDED
            ]

            principals = self.server.principals()
            # Browsers send CORS preflights to the presigned URL itself; S3 does not check those.
            if (
                self.command != "OPTIONS"
                and sigv4.is_presigned(query)
                and sigv4.credential_service(query) == "s3"
            ):
                refusal = sigv4.verify_presigned(
                    method=self.command,
                    raw_path=split.path,
                    query=query,
                    headers=headers,
                    secrets={key: p.secret_key for key, p in principals.items()},
                    region=self.server.region,
                )
                if refusal is not None:
                    self._refuse(refusal.status, refusal.code, refusal.message)
                    return

            if service == "s3" and not _payload_hash_matches(headers, digest.hexdigest()):
                self._refuse(
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
                return

            hide_missing: str | None = None  # a bucket ARN: its 404s answer 403 to this caller
            if self.server.enforce_iam and self.command != "OPTIONS":
                needs_body = service in ("dynamodb", "sqs", "secretsmanager", "monitoring") or (
                    self.command == "POST" and "delete" in dict(query)
                )
                request = iam.Request(
                    self.command, self.path, query, headers, spool.read() if needs_body else b""
                )
                spool.seek(0)
                allowed, hide_missing = self._authorize(request, service, principals)
                if not allowed:
                    return

            if self.command == "PUT" and service in ("s3", None):
                problem = _checksum_problem(headers, digest.digest())
                if problem is not None:
                    self._refuse(*problem)
                    return
                if (
                    "x-amz-checksum-sha256" in headers
                    and "x-amz-sdk-checksum-algorithm" not in headers
                    and "partNumber" not in dict(query)
                ):
                    # moto keeps a checksum only when the SDK header names its algorithm.
                    forward.append(("x-amz-sdk-checksum-algorithm", "SHA256"))

            if self._is_receive_message(headers, service):
                self._long_poll(headers, forward, spool.read())
                return

            upstream = self.server.upstream
            with upstream.lock:
                failed = None
                if self.command == "PUT" and "x-amz-copy-source" in headers:
                    failed = self._copy_precondition(split.path, headers)
                if failed is None:
                    response = upstream.send(
                        self.command, self.path, forward, spool if has_body else None, length
                    )
            # Answering the client happens outside the lock: a slow reader must not stall others.
            if failed is not None:
                self._refuse(412, "PreconditionFailed", _PRECONDITION, Condition=failed)
                return
            if hide_missing is not None and response.status == 404:
                body = response.read()
                if b"<Code>NoSuchBucket</Code>" not in body:
                    log.info("iam: 404 answered as 403, no s3:ListBucket on %s", hide_missing)
                    self._s3_error(403, "AccessDenied", "Access Denied")
                    return
                self.send_plain(404, _end_to_end(response.getheaders()), body)
                return
            self._relay(response)

    # --- IAM ---------------------------------------------------------------------------------

    def _authorize(
        self, request: iam.Request, service: str | None, principals: dict[str, iam.Principal]
    ) -> tuple[bool, str | None]:
        """Whether the request may proceed (else the refusal is sent), and the bucket ARN whose
        404s must be hidden from this caller (S3 without s3:ListBucket)."""
        access_key = iam.access_key_of(request)
        if access_key is None:
            if _is_public(request):
                return True, None
            log.info("iam: denied an unsigned %s %s", self.command, self.path)
            self._anonymous(request)
            return False, None
        principal = principals.get(access_key)
        if principal is None:
            log.info("iam: unknown access key %s: %s %s", access_key, self.command, self.path)
            self._invalid_key(request)
            return False, None
        if principal.policy is None:
            return True, None
        if urlsplit(self.path).path.startswith("/moto-api/"):
            self._deny(request, iam.Denial(principal, "moto-api", self.path, explicit=False))
            return False, None
        try:
            needed = iam.required(
                request,
                region=self.server.region,
                account_id=principal.account_id,
                secret_arn=self._secret_arn,
                keys=kms.MotoKeys(account_id=principal.account_id, region=self.server.region),
            )
        except iam.Unmapped as exc:
            log.info("iam: denied %s an unmapped request (%s): %s", principal.name, exc, self.path)
            self._deny(request, iam.Denial(principal, "unmapped", self.path, explicit=False))
            return False, None
        denial = iam.authorize(principal, needed)
        audit = self.server.audit
        if audit is not None:
            for action, resource in needed:
                audit(principal, action, resource, principal.policy.decide(action, resource))
        if denial is not None:
            self._deny(request, denial)
            return False, None
        bucket = iam.missing_key_answer_needs(request)
        if bucket is not None:
            listing = principal.policy.decide("s3:ListBucket", bucket)
            if audit is not None:
                audit(principal, "s3:ListBucket", bucket, listing)
            if listing == "Allow":
                bucket = None
        return True, bucket

    def _secret_arn(self, secret_id: str) -> str | None:
        """The full ARN of a secret named by name or partial ARN, as moto knows it."""
        credential = (
            f"{iam.ADMIN_ACCESS_KEY}/20200101/{self.server.region}/secretsmanager/aws4_request"
        )
        reply = self.server.upstream.read(
            "POST",
            "/",
            [
                ("Host", self.headers.get("Host", "127.0.0.1")),
                ("X-Amz-Target", "secretsmanager.DescribeSecret"),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Authorization", f"AWS4-HMAC-SHA256 Credential={credential}, Signature=0"),
            ],
            json.dumps({"SecretId": secret_id}).encode(),
        )
        if reply.status != 200:
            return None
        arn = json.loads(reply.body).get("ARN")
        return arn if isinstance(arn, str) else None

    def _deny(self, request: iam.Request, denial: iam.Denial) -> None:
        log.info("iam: denied %s %s on %s", denial.principal.name, denial.action, denial.resource)
        service = iam.service_of(request)
        if service == "dynamodb":
            self._json_error(400, "com.amazon.coral.service#AccessDeniedException", denial.message)
        elif service == "secretsmanager":
            self._json_error(400, "AccessDeniedException", denial.message, json_version="1.1")
        elif service == "sqs" and denial.action.startswith("kms:"):
            # SQS calls KMS as the caller, and passes KMS's refusal on under its own code.
            self._sqs_error(400, "KMS.AccessDeniedException", denial.message)
        elif service == "sqs":
            self._sqs_error(403, "AccessDenied", denial.message)
        elif service == "monitoring":
            self._cloudwatch_error(403, "AccessDenied", denial.message)
        else:
            self._s3_error(403, "AccessDenied", denial.message)

    def _invalid_key(self, request: iam.Request) -> None:
        service = iam.service_of(request)
        message = "The security token included in the request is invalid."
        if service in ("dynamodb", "secretsmanager") or (
            service == "sqs" and request.header("x-amz-target")
        ):
            self._json_error(400, "UnrecognizedClientException", message)
        elif service == "sqs":
            self._sqs_error(403, "InvalidClientTokenId", message)
        elif service == "monitoring":
            self._cloudwatch_error(403, "InvalidClientTokenId", message)
        else:
            self._s3_error(
                403,
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )

    def _anonymous(self, request: iam.Request) -> None:
        if request.header("smithy-protocol"):
            message = "Missing Authentication Token"
            self._cloudwatch_error(403, "MissingAuthenticationToken", message)
        elif request.header("x-amz-target"):
            self._json_error(
                400, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        else:
            self._s3_error(403, "AccessDenied", "Access Denied")

    def _json_error(
        self, status: int, error_type: str, message: str, *, json_version: str = "1.0"
    ) -> None:
        body = json.dumps({"__type": error_type, "message": message}).encode()
        headers = [
            ("Content-Type", f"application/x-amz-json-{json_version}"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ]
        self.send_plain(status, headers, body)

    def _sqs_error(self, status: int, code: str, message: str) -> None:
        """SQS's error in the protocol the request used (JSON, or the older query/XML one)."""
        request_id = str(uuid.uuid4())
        if self.headers.get("X-Amz-Target"):
            body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
            headers = [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("x-amzn-RequestId", request_id),
                # botocore takes the error code of a query-compatible service from this header.
                ("x-amzn-query-error", f"{code};Sender"),
            ]
        else:
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        self.send_plain(status, headers, body)

    def _cloudwatch_error(self, status: int, code: str, message: str) -> None:
        """CloudWatch's error in the protocol the request used: rpc-v2-cbor (a CBOR body),
        JSON (what botocore 1.43 speaks to CloudWatch), or the query protocol's XML. Like SQS,
        CloudWatch is query-compatible: x-amzn-query-error carries the code botocore reports."""
        request_id = str(uuid.uuid4())
        query_error = ("x-amzn-query-error", f"{code};Sender")
        if self.headers.get("smithy-protocol") == "rpc-v2-cbor":
            body = _cbor_text_map({"__type": code, "message": message})
            headers = [
                ("Content-Type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("x-amzn-RequestId", request_id),
                query_error,
            ]
        elif self.headers.get("X-Amz-Target"):
            body = json.dumps({"__type": code, "message": message}).encode()
            headers = [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("x-amzn-RequestId", request_id),
                query_error,
            ]
        else:
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>"
            ).encode()
            headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
        self.send_plain(status, headers, body)

    # --- S3 rules ----------------------------------------------------------------------------

    def _copy_precondition(self, path: str, headers: dict[str, list[str]]) -> str | None:
        """The condition a CopyObject fails, if any (moto ignores these). Holds the lock."""
        source = unquote(headers["x-amz-copy-source"][0].split("?", 1)[0]).lstrip("/")
        if_match = _first(headers, "x-amz-copy-source-if-match")
        if_none_match = _first(headers, "x-amz-copy-source-if-none-match")
        if if_match is not None or if_none_match is not None:
            etag = self._etag("/" + quote(source, safe="/~"))
            if etag is not None:
                if if_match is not None and not _etag_matches(if_match, etag):
                    return "x-amz-copy-source-If-Match"
                if if_none_match is not None and _etag_matches(if_none_match, etag):
                    return "x-amz-copy-source-If-None-Match"
        target_if_none_match = _first(headers, "if-none-match")
        if target_if_none_match == "*" and self._etag(path) is not None:
            return "If-None-Match"
        return None

    def _etag(self, path: str) -> str | None:
        """The ETag of an object, or None when it does not exist. Holds the lock."""
        auth = [
            (name, value)
            for name, value in self.headers.items()
            if name.lower() in ("host", "authorization", "x-amz-date", "x-amz-security-token")
        ]
        response = self.server.upstream.send("HEAD", path, auth)
        response.read()
        return response.getheader("ETag") if response.status == 200 else None

    # --- SQS long polling --------------------------------------------------------------------

    def _is_receive_message(self, headers: dict[str, list[str]], service: str | None) -> bool:
        if self.command != "POST" or service not in ("sqs", None):
            return False
        target = _first(headers, "x-amz-target") or ""
        if target:
            return target == "AmazonSQS.ReceiveMessage"
        return "form-urlencoded" in (_first(headers, "content-type") or "") and service == "sqs"

    def _long_poll(
        self, headers: dict[str, list[str]], forward: list[tuple[str, str]], body: bytes
    ) -> None:
        """ReceiveMessage with WaitTimeSeconds, polled without holding the emulator's lock."""
        if _first(headers, "x-amz-target"):
            request = json.loads(body or b"{}")
            wait = float(request.get("WaitTimeSeconds") or 0)
            request["WaitTimeSeconds"] = 0
            short_poll = json.dumps(request).encode()
        else:
            form = parse_qsl(body.decode(), keep_blank_values=True)
            wait = float(dict(form).get("WaitTimeSeconds") or 0)
            form = [(k, v) for k, v in form if k != "WaitTimeSeconds"] + [("WaitTimeSeconds", "0")]
            short_poll = urlencode(form).encode()
        deadline = time.monotonic() + wait
        while True:
            reply = self.server.upstream.read(self.command, self.path, forward, short_poll)
            if reply.status != 200 or _has_messages(reply.body) or time.monotonic() >= deadline:
                break
            time.sleep(min(_LONG_POLL_INTERVAL, max(deadline - time.monotonic(), 0)))
        self.send_plain(reply.status, _end_to_end(reply.headers), reply.body)

    # --- responses ---------------------------------------------------------------------------

    def _relay(self, response: _Response) -> None:
        headers = _end_to_end(response.getheaders())
        length = response.getheader("Content-Length")
        head = self.command == "HEAD"
        if length is None and not head:
            self.send_plain(response.status, headers, response.read())
            return
        self.send_response_only(response.status, response.reason)
        for name, value in headers:
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", length)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            for block in _blocks(response):
                self.wfile.write(block)
        response.close()

    def _answer_preflight(self) -> None:
        # As Cognito's endpoint does: any origin may call its public operations from a page.
        headers = [
            ("Access-Control-Allow-Origin", self.headers.get("Origin") or "*"),
            ("Access-Control-Allow-Methods", "POST"),
            (
                "Access-Control-Allow-Headers",
                self.headers.get("Access-Control-Request-Headers", ""),
            ),
            ("Access-Control-Max-Age", "600"),
            ("Vary", "Origin"),
        ]
        self.send_plain(200, headers, b"")

    def _refuse(self, status: int, code: str, message: str, **extra: str) -> None:
        log.info("emulator refused %s %s: %s %s", self.command, self.path, status, code)
        self._s3_error(status, code, message, **extra)

    def _s3_error(self, status: int, code: str, message: str, **extra: str) -> None:
        request_id = uuid.uuid4().hex[:16].upper()
        fields = {"Code": code, "Message": message, **extra, "RequestId": request_id}
        xml = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{xml}</Error>'.encode()
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        if origin := self.headers.get("Origin"):
            # A browser must be able to read why S3 refused its PUT (BadDigest, expired URL).
            headers += [
                ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", "ETag"),
                ("Vary", "Origin"),
            ]
        self.send_plain(status, headers, body, head=self.command == "HEAD")


_PRECONDITION = "At least one of the pre-conditions you specified did not hold"


def _cbor_text_map(fields: dict[str, str]) -> bytes:
    """A CBOR map of text strings (RFC 8949 major types 5 and 3): all an error body needs."""

    def head(major: int, length: int) -> bytes:
        if length < 24:
            return bytes([major << 5 | length])
        for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if length < 1 << (8 * size):
                return bytes([major << 5 | extra]) + length.to_bytes(size, "big")
        raise ValueError("too long for CBOR")

    encoded = bytearray(head(5, len(fields)))
    for name, value in fields.items():
        for text in (name.encode(), value.encode()):
            encoded += head(3, len(text)) + text
    return bytes(encoded)


def _checksum_problem(headers: dict[str, list[str]], digest: bytes) -> tuple[int, str, str] | None:
    claimed = _first(headers, "x-amz-checksum-sha256")
    if claimed is None:
        return None
    encoding = (_first(headers, "content-encoding") or "").lower()
    if "aws-chunked" in encoding:
        return None  # the checksum travels in the chunked body's trailer; moto decodes that
    try:
        raw = base64.b64decode(claimed, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return 400, "InvalidRequest", "Value for x-amz-checksum-sha256 header is invalid."
    if raw != digest:
        return (
            400,
            "BadDigest",
            "The SHA256 you specified did not match the calculated checksum.",
        )
    return None


# Cognito's user-pool operations that AWS answers without a signature (the token-bearing ones,
# GetUser to RevokeToken, are authorized by the user's access or refresh token instead).
_PUBLIC_TARGETS = frozenset(
    f"AWSCognitoIdentityProviderService.{op}"
    for op in (
        "InitiateAuth",
        "RespondToAuthChallenge",
        "SignUp",
        "ConfirmSignUp",
        "ForgotPassword",
        "ConfirmForgotPassword",
        "GetUser",
        "ChangePassword",
        "GlobalSignOut",
        "RevokeToken",
    )
)


def _is_json_preflight(path: str, headers: Message) -> bool:
    """A browser's CORS preflight of a JSON-protocol call (a sign-in page's InitiateAuth): moto
    routes OPTIONS / to S3's ListBuckets and fails, where AWS's endpoint answers it."""
    requested = (headers.get("Access-Control-Request-Headers") or "").lower()
    return path in ("", "/") and "x-amz-target" in requested


def _is_public(request: iam.Request) -> bool:
    """Unsigned requests that reach moto: its control plane, preflights, public operations."""
    path = urlsplit(request.path).path
    return (
        request.method == "OPTIONS"
        or path.startswith("/moto-api/")
        or path.endswith("/.well-known/jwks.json")
        or request.header("x-amz-target") in _PUBLIC_TARGETS
    )


def _payload_hash_matches(headers: dict[str, list[str]], digest: str) -> bool:
    """A header-signed S3 request's x-amz-content-sha256, when it is a hash, is the body's."""
    claimed = _first(headers, "x-amz-content-sha256") or ""
    if len(claimed) != 64 or "aws-chunked" in (_first(headers, "content-encoding") or ""):
        return True  # UNSIGNED-PAYLOAD, STREAMING-..., or absent
    return claimed.lower() == digest


def _service(headers: dict[str, list[str]], query: list[tuple[str, str]]) -> str | None:
    """The service a request was signed for, from its credential scope; None when unsigned."""
    auth = _first(headers, "authorization") or ""
    if "Credential=" in auth:
        scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        return scope[3] if len(scope) == 5 else None
    return sigv4.credential_service(query)


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _etag_matches(condition: str, etag: str) -> bool:
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in condition.split(",")}
    return "*" in wanted or etag.strip().removeprefix("W/").strip('"') in wanted


def _has_messages(body: bytes) -> bool:
    if body.lstrip().startswith(b"{"):
        return bool(json.loads(body).get("Messages"))
    return b"<Message>" in body


def _end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP | {"content-length"}]


def _blocks(response: _Response) -> Iterator[bytes]:
    while block := response.read(_BLOCK):
        yield block


class Emulator:
    """moto on an internal port, and the strict proxy every client uses, on 127.0.0.1.

    ``principals`` are who may call (by access key); the admin identity alone by default.
    ``enforce_iam=False`` skips authorization (any signed request passes, as with bare moto);
    presigned URLs are still verified against the principals' secrets. ``audit`` is told of every
    decision on a function's request (for tests).
    """

    def __init__(
        self,
        port: int = 4566,
        *,
        region: str = "us-east-1",
        principals: Iterable[iam.Principal] | None = None,
        enforce_iam: bool = True,
        audit: Audit | None = None,
    ) -> None:
        self._port = port
        self.region = region
        self.enforce_iam = enforce_iam
        self.audit = audit
        self._principals = list(principals) if principals is not None else [iam.admin_principal()]
        self._moto: ThreadedMotoServer | None = None
        self._proxy: ProxyServer | None = None

    def set_principals(self, principals: Iterable[iam.Principal]) -> None:
        """Replace who may call, and with which policies; applies to the next request on."""
        self._principals = list(principals)
        if self._proxy is not None:
            self._proxy.set_principals(self._principals)

    @property
    def endpoint_url(self) -> str:
        assert self._proxy is not None, "start() first"
        return f"http://127.0.0.1:{self._proxy.port}"

    def start(self) -> Emulator:
        # Access logs of moto's werkzeug server would drown everything else.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto_speed.install()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        try:
            self._proxy = ProxyServer(
                self._port,
                # moto's server keeps running for clients of moto itself (the hash bench); the
                # proxy calls an application of its own, over the same in-process backends.
                _Upstream(DomainDispatcherApplication(create_backend_app), host, port),
                region=self.region,
                principals=self._principals,
                enforce_iam=self.enforce_iam,
                audit=self.audit,
            )
        except OSError:
            self._moto.stop()
            self._moto = None
            raise
        self._proxy.start()
        return self

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
