"""How results look: one line per file for people, one JSON object per file for programs."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onecopy_cli.upload import FileResult

REASONS = {
    "size_mismatch": "the bytes that arrived are not the size that was declared",
    "checksum_mismatch": "the bytes that arrived do not have the SHA-256 that was declared",
}

_COLORS = {
    "stored": "32",
    "duplicate": "36",
    "rejected": "31",
    "pending": "33",
    "failed": "31",
    "ok": "32",
    "attention": "1;31",
}
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


def human_duration(seconds: float) -> str:
    """A span of time, to the minute above one, to the hour above a day: "45 s", "59 min",
    "2 h 5 min", "2 h", "3 d 4 h"."""
    if seconds < 60:
        return f"{max(int(seconds), 0)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} h {minutes % 60} min" if minutes % 60 else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h" if hours % 24 else f"{hours // 24} d"


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
        parts.append("(you already hold it: nothing uploaded)")
    return "  ".join(parts)


def result_json(result: FileResult, *, resume: str | None = None) -> str:
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
    if resume:
        record["resume"] = resume
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


def _size(nbytes: Any) -> str:
    if not isinstance(nbytes, int):
        return "?"
    return f"{human_size(nbytes)} ({nbytes} bytes)" if nbytes >= 1024 else f"{nbytes} B"


def _aligned(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}".rstrip() for label, value in rows)


def metadata_view(meta: dict[str, Any], *, color: bool = False) -> str:
    """GET /metadata/{id} as `Label  value` lines: an upload (it has a status) or a content you
    hold (your first upload of it, and how many of your uploads refer to it)."""
    if "status" in meta:
        status = str(meta.get("status", "?")).lower()
        label = paint(status, status, color=color)
        if meta.get("duplicate"):
            label += " (you already held this content: this upload added no bytes)"
        rows = [
            ("Upload", str(meta.get("upload_id", "?"))),
            ("Status", label),
            ("File", str(meta.get("filename", "?"))),
            ("Size", _size(meta.get("size"))),
            ("Type", str(meta.get("content_type", "?"))),
            ("SHA-256", str(meta.get("sha256", "?"))),
            ("Created", str(meta.get("created_at", "?"))),
            ("Completed", str(meta.get("completed_at", "?"))),
        ]
    else:
        rows = [
            ("SHA-256", str(meta.get("sha256", "?"))),
            ("Size", _size(meta.get("size"))),
            ("Type", str(meta.get("content_type", "?"))),
            ("File", str(meta.get("filename", "?"))),
            ("First upload", str(meta.get("upload_id", "?"))),
            ("Your uploads", str(meta.get("upload_count", "?"))),
            ("First held", str(meta.get("created_at", "?"))),
        ]
    return _aligned(rows)


def stats_view(stats: dict[str, Any]) -> str:
    """GET /admin/stats for people: counts, and byte totals in KiB/MiB/GiB with the exact value."""
    return _aligned(
        [
            ("Contents stored", str(stats.get("total_files", "?"))),
            ("Uploads", str(stats.get("total_uploads", "?"))),
            ("Duplicates avoided", str(stats.get("duplicates_avoided", "?"))),
            ("Bytes stored", _size(stats.get("total_bytes_stored"))),
            ("Bytes saved", _size(stats.get("total_s3_size_saved"))),
        ]
    )


def _to_the_second(timestamp: Any) -> str:
    """`2025-11-27T14:05:12.123456Z` as `2025-11-27T14:05:12Z`; anything else as it is."""
    text = str(timestamp)
    if len(text) > 19 and text[10:11] == "T":
        return text[:19] + "Z"
    return text


HASHES_HEADER = f"{'SHA-256':<64}  {'SIZE':>9}  {'UPLOADS':>7}  {'CREATED':<20}  TYPE"


def hash_row(item: dict[str, Any]) -> str:
    """One line of `onecopy hashes` under HASHES_HEADER; the created time to the second."""
    size = item.get("size")
    return "  ".join(
        [
            f"{item.get('sha256', '?'):<64}",
            (human_size(size) if isinstance(size, int) else "?").rjust(9),
            f"{item.get('upload_count', '?')!s:>7}",
            f"{_to_the_second(item.get('created_at', '?')):<20}",
            str(item.get("content_type", "?")),
        ]
    )


UPLOADS_HEADER = f"{'UPLOAD':<32}  {'STATUS':<{_STATUS_WIDTH}}  {'SIZE':>9}  {'CREATED':<20}  FILE"


def upload_row(item: dict[str, Any], *, color: bool = False) -> str:
    """One line of `onecopy ls` under UPLOADS_HEADER: the filename last, as it may hold spaces."""
    status = str(item.get("status", "?")).lower()
    size = item.get("size")
    return "  ".join(
        [
            f"{item.get('upload_id', '?'):<32}",
            paint(status.ljust(_STATUS_WIDTH), status, color=color),
            (human_size(size) if isinstance(size, int) else "?").rjust(9),
            f"{_to_the_second(item.get('created_at', '?')):<20}",
            str(item.get("filename", "?")),
        ]
    )


_COUNTERS = ("files", "uploads", "duplicates", "bytes_saved", "bytes_stored")


def reconcile_view(report: dict[str, Any]) -> str:
    """The ReconcileFunction's report: a verdict, then counted vs recorded for each counter."""
    facts = report.get("facts") or {}
    counters = report.get("counters") or {}
    drift = report.get("drift") or {}
    mismatches: dict[str, Any] = report.get("upload_count_mismatches") or {}
    if report.get("clean"):
        lines = ["clean: every counter matches the tables"]
    elif report.get("repaired"):
        lines = ["repaired: the counters had drifted from the tables and were corrected"]
    else:
        lines = ["drift: the counters do not match the tables"]
    lines.append("")
    lines.append(f"{'counter':<13}  {'counted':>14}  {'recorded':>14}  {'drift':>10}")
    for name in _COUNTERS:
        change = drift.get(name, 0)
        lines.append(
            f"{name:<13}  {facts.get(name, '?')!s:>14}  {counters.get(name, '?')!s:>14}  "
            f"{f'{change:+d}' if isinstance(change, int) and change else '0':>10}"
        )
    if mismatches:
        lines.append("")
        lines.append(
            f"upload_count differs from the uploads found for {len(mismatches)} content(s):"
        )
        for sha256, counts in sorted(mismatches.items()):
            recorded, found = counts.get("recorded", "?"), counts.get("found", "?")
            lines.append(f"  {sha256}  recorded {recorded}, found {found}")
    holdings: list[dict[str, Any]] = report.get("holding_count_mismatches") or []
    if holdings:
        lines.append("")
        lines.append(f"holdings that differ from the owners' uploads: {len(holdings)}")
        for row in holdings:
            recorded = "missing" if row.get("recorded") is None else row.get("recorded")
            lines.append(
                f"  {row.get('owner')}  {row.get('sha256')}  recorded {recorded}, "
                f"found {row.get('found')}"
            )
    return "\n".join(lines)


def _parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _when(value: Any, now: datetime) -> str:
    """An API time as `2025-11-27T14:05:12Z (3 h 5 min ago)`; "never" for null."""
    if value is None:
        return "never"
    at = _parse_time(value)
    if at is None:
        return str(value)
    return f"{_to_the_second(value)} ({human_duration((now - at).total_seconds())} ago)"


def _count(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "?"


def _part(health: dict[str, Any], key: str) -> dict[str, Any]:
    part = health.get(key)
    return part if isinstance(part, dict) else {}


def health_view(health: dict[str, Any], *, now: datetime, color: bool = False) -> str:
    """GET /admin/health for people: what needs attention first, then one section per part,
    ages and times humanized against ``now``."""
    attention = [str(item) for item in health.get("attention") or []]
    if attention:
        lines = [paint(f"needs attention ({len(attention)}):", "attention", color=color)]
        lines += [paint(f"  {item}", "attention", color=color) for item in attention]
    else:
        lines = [paint("ok: nothing needs attention", "ok", color=color)]

    ingest = _part(health, "ingest_queue")
    age = ingest.get("oldest_message_age_seconds")
    oldest = (
        f"{human_duration(age)} old"
        if isinstance(age, int | float) and not isinstance(age, bool)
        else "no recent datapoint"
    )
    dead = _part(health, "dead_letter_queue")
    dead_total = sum(v for v in (dead.get("waiting"), dead.get("in_flight")) if isinstance(v, int))
    dead_status = "failed" if dead_total else ""

    reconciliation = _part(health, "reconciliation")
    reconcile_rows = [("Last run", _when(reconciliation.get("at"), now))]
    if reconciliation.get("at") is not None:
        if reconciliation.get("clean") is True:
            verdict = paint("clean", "ok", color=color)
        elif reconciliation.get("clean") is False:
            drift = f"drift {_count(reconciliation.get('drift'))}"
            repaired = ", repaired" if reconciliation.get("repaired") else ", not repaired"
            verdict = paint(drift + repaired, "failed", color=color)
        else:
            verdict = "?"
        reconcile_rows.append(("Result", verdict))

    collection = _part(health, "collection")
    grace = collection.get("grace_seconds")
    due = _count(collection.get("due"))
    if isinstance(grace, int) and not isinstance(grace, bool):
        due += f" (past the {human_duration(grace)} grace period)"
    collect_rows = [
        ("Unreferenced", _count(collection.get("unreferenced"))),
        ("Due", due),
        ("Last run", _when(collection.get("last_run_at"), now)),
    ]
    if collection.get("last_run_at") is not None:
        collected = _count(collection.get("last_collected"))
        if collection.get("last_run_complete") is False:
            collected += " (stopped for time: the next run goes on)"
        collect_rows.append(("Collected", collected))

    sections: list[tuple[str, list[tuple[str, str]]]] = [
        (
            "Ingest queue",
            [
                ("Waiting", _count(ingest.get("waiting"))),
                ("In flight", _count(ingest.get("in_flight"))),
                ("Oldest message", oldest),
            ],
        ),
        (
            "Dead-letter queue",
            [
                ("Waiting", paint(_count(dead.get("waiting")), dead_status, color=color)),
                ("In flight", paint(_count(dead.get("in_flight")), dead_status, color=color)),
            ],
        ),
        ("Reconciliation", reconcile_rows),
        ("Collection", collect_rows),
    ]
    width = max(len(label) for _, rows in sections for label, _ in rows)
    for title, rows in sections:
        lines.append("")
        lines.append(title)
        lines += [f"  {label:<{width}}  {value}".rstrip() for label, value in rows]
    return "\n".join(lines)
