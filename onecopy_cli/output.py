"""How results look: one line per file for people, one JSON object per file for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onecopy_cli.upload import FileResult

REASONS = {
    "size_mismatch": "the bytes that arrived are not the size that was declared",
    "checksum_mismatch": "the bytes that arrived do not have the SHA-256 that was declared",
}

_COLORS = {"stored": "32", "duplicate": "36", "rejected": "31", "pending": "33", "failed": "31"}
_STATUS_WIDTH = len("duplicate")


def human_size(nbytes: int) -> str:
    if nbytes < 1024:
        return f"{nbytes} B"
    value = float(nbytes)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def paint(text: str, status: str, *, color: bool) -> str:
    code = _COLORS.get(status)
    return f"\x1b[{code}m{text}\x1b[0m" if color and code else text


def result_line(result: FileResult, *, color: bool = False) -> str:
    """`stored     <sha256>  1.2 MiB  path/to/file  <upload id>`, plus a note when useful."""
    status = result.outcome.value
    label = f"{status} ({result.reason})" if result.reason else status
    parts = [
        paint(label.ljust(_STATUS_WIDTH), status, color=color),
        result.sha256 or "-",
        human_size(result.size).rjust(9) if result.size is not None else "-".rjust(9),
        result.path,
        result.upload_id or "-",
    ]
    if result.already_stored:
        parts.append("(already stored, nothing uploaded)")
    return "  ".join(parts)


def result_json(result: FileResult) -> str:
    record: dict[str, Any] = {
        "file": result.path,
        "filename": result.filename,
        "status": result.outcome.value,
        "upload_id": result.upload_id,
        "sha256": result.sha256,
        "size": result.size,
        "content_type": result.content_type,
    }
    if result.already_stored:
        record["already_stored"] = True
    if result.reason:
        record["reason"] = result.reason
    if result.error:
        record["error"] = result.error
    return json.dumps(record, ensure_ascii=False)


def upload_view(view: dict[str, Any], *, color: bool = False) -> str:
    """The API's view of one upload (GET /uploads/{id}) as aligned `Label  value` lines."""
    status = str(view.get("status", "?")).lower()
    rows: list[tuple[str, str]] = [
        ("Upload", str(view.get("upload_id", "?"))),
        ("Status", paint(status, status, color=color)),
        ("File", str(view.get("filename", "?"))),
    ]
    size = view.get("size")
    if isinstance(size, int):
        rows.append(("Size", f"{human_size(size)} ({size} bytes)" if size >= 1024 else f"{size} B"))
    optional = (
        ("Type", "content_type"),
        ("SHA-256", "sha256"),
        ("Created", "created_at"),
        ("Completed", "completed_at"),
    )
    rows += [(label, str(view[key])) for label, key in optional if view.get(key)]
    reason = view.get("reason")
    if reason:
        rows.append(("Reason", f"{reason}: {REASONS[reason]}" if reason in REASONS else reason))
    if status == "pending":
        rows.append(("", "waiting for the bytes to arrive and be checked"))
    return "\n".join(f"{label:<9}  {value}".rstrip() for label, value in rows)
