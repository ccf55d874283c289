"""The upload page in Chromium against the local stack: what a person sees and gets back.

Every test signs in through the page's own form (the `sign_in` fixture): as alice, or as admin
where the statistics panel is needed (only admins see it)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, FilePayload, Locator, Page, Request, Route, expect

from tests.localstack import get_upload

pytestmark = pytest.mark.e2e

FINAL = ("Stored", "Duplicate", "Rejected", "Failed")


def pick(name: str, data: bytes, mime: str = "application/octet-stream") -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": data}


def stats(local_stack: Any) -> dict[str, int]:
    response = requests.get(
        f"{local_stack.api_url}/admin/stats", headers=local_stack.auth("admin"), timeout=10
    )
    response.raise_for_status()
    counters: dict[str, int] = response.json()
    return counters


def rows(page: Page) -> Locator:
    return page.get_by_role("listitem")


def status_of(row: Locator) -> Locator:
    return row.get_by_role("status")


def downloaded(page: Page, row: Locator) -> tuple[bytes, str]:
    """What the row's Download button saves: its bytes and the file name the browser suggests."""
    with page.expect_download() as download:
        row.get_by_role("button", name="Download").click()
    return Path(download.value.path()).read_bytes(), download.value.suggested_filename


@pytest.fixture
def upload_page(page: Page, page_url: str, sign_in: Any) -> Page:
    """The page, signed in as alice."""
    page.goto(page_url)
    sign_in(page, "alice")
    return page


@pytest.fixture
def admin_page(page: Page, page_url: str, sign_in: Any) -> Page:
    """The page, signed in as admin: the statistics panel is shown and filled."""
    page.goto(page_url)
    sign_in(page, "admin")
    expect(page.locator("#stat-files")).to_have_attribute("value", re.compile(r"^\d+$"))
    return page


def test_two_files_and_a_copy_are_stored_once_and_counted(
    admin_page: Page, local_stack: Any, output_dir: Path
) -> None:
    # Given two distinct contents, and a copy of the first under another name
    page = admin_page
    report, photo = os.urandom(3000), os.urandom(5000)
    before = stats(local_stack)

    # When a person picks all three at once
    page.get_by_label("Files to upload").set_input_files(
        [
            pick("report.pdf", report, "application/pdf"),
            pick("photo.jpg", photo, "image/jpeg"),
            pick("report (copy).pdf", report, "application/pdf"),
        ]
    )

    # Then the first two are stored and the copy is recognised without uploading it again
    expect(rows(page)).to_have_count(3)
    expect(status_of(rows(page).nth(0))).to_have_text("Stored")
    expect(status_of(rows(page).nth(1))).to_have_text("Stored")
    expect(status_of(rows(page).nth(2))).to_have_text(
        "Duplicate: already stored, nothing uploaded (2.9 KiB saved)"
    )
    # And the statistics panel counts exactly these uploads
    expected = {
        "#stat-files": before["total_files"] + 2,
        "#stat-uploads": before["total_uploads"] + 3,
        "#stat-duplicates": before["duplicates_avoided"] + 1,
        "#stat-saved": before["total_s3_size_saved"] + len(report),
        "#stat-stored": before["total_bytes_stored"] + len(report) + len(photo),
    }
    for cell, value in expected.items():
        expect(page.locator(cell)).to_have_attribute("value", str(value))

    # And each Download button saves the very bytes, under the row's own name
    for index, data, name in [(0, report, "report.pdf"), (1, photo, "photo.jpg")]:
        assert downloaded(page, rows(page).nth(index)) == (data, name)
    assert downloaded(page, rows(page).nth(2))[0] == report

    page.screenshot(path=output_dir / "upload-page.png", full_page=True)


def test_bytes_changed_on_the_way_are_rejected_by_storage(
    upload_page: Page, local_stack: Any
) -> None:
    # Given a network that flips one byte of every upload on its way to storage
    page = upload_page
    answers: list[tuple[int, str]] = []

    def corrupt(route: Route, request: Request) -> None:
        if request.method != "PUT":
            route.continue_()
            return
        body = request.post_data_buffer or b""
        answer = route.fetch(post_data=bytes([body[0] ^ 0xFF]) + body[1:])
        answers.append((answer.status, answer.text()))
        route.fulfill(response=answer)

    page.route(f"{local_stack.endpoint_url}/**", corrupt)

    # When a file is uploaded
    page.get_by_label("Files to upload").set_input_files(pick("notes.txt", b"meeting notes\n" * 50))

    # Then storage refused the bytes (the signed SHA-256 no longer matches) and the row says so
    expect(status_of(rows(page).first)).to_have_text(
        "Rejected: The bytes that arrived do not match the file's SHA-256. "
        "The file may have changed while uploading: pick it again."
    )
    assert [status for status, _ in answers] == [400]
    assert "<Code>BadDigest</Code>" in answers[0][1]
    expect(rows(page).first.get_by_role("button", name="Download")).to_be_hidden()


def test_an_unreachable_api_says_what_to_check(page: Page, static_site: str) -> None:
    # Given an API URL where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    page.goto(f"{static_site}/?api={quote(dead, safe='')}")
    advice = f"Cannot reach the API at {dead}. Check your connection, or the API URL in Settings."

    # When the page asks it where to sign in
    # Then the sign-in form says which API failed and what to check
    expect(page.get_by_role("alert")).to_have_text(advice)
    # And trying again says it again (the API may have come back meanwhile)
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("anything")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text(advice)


def test_the_api_validation_message_is_shown(upload_page: Page, local_stack: Any) -> None:
    # Given a file whose type the API refuses, and the message the API gives for it
    body = {"filename": "odd.bin", "size": 3, "content_type": "nonsense", "sha256": sha256(b"odd")}
    refused = requests.post(
        f"{local_stack.api_url}/uploads", json=body, headers=local_stack.auth(), timeout=10
    )
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert "content_type" in message
    # When it is picked
    upload_page.get_by_label("Files to upload").set_input_files(
        pick("odd.bin", b"odd", mime="nonsense")
    )
    # Then the row shows the API's own message
    expect(status_of(rows(upload_page).first)).to_have_text(f"Failed: {message}")


def test_a_file_the_api_wants_in_parts_is_uploaded_in_parts(
    upload_page: Page, page_url: str, local_stack: Any
) -> None:
    # Given an API that answers with multipart instructions though the page did not ask for them
    def ask_for_parts(route: Route, request: Request) -> None:
        body = json.loads(request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "multipart": True}))

    upload_page.route(f"{page_url}uploads", ask_for_parts)
    parts = part_puts(upload_page, local_stack)
    data = os.urandom(64)
    # When a file is picked
    upload_page.get_by_label("Files to upload").set_input_files(pick("small.iso", data))
    # Then it goes as one part and is stored
    expect(status_of(rows(upload_page).first)).to_have_text("Stored")
    expect(rows(upload_page).first.locator(".sha256 code")).to_have_text(sha256(data))
    assert parts == [1]


# --- uploads in parts -------------------------------------------------------------------------

# The local stack cuts uploads into 16 MiB parts: this size makes two, the second 1 MiB.
TWO_PARTS = 17 * 1024**2

# Records every state of every row, so a test can see what a person saw while it uploaded.
WATCH_ROWS = """
window.seen = [];
new MutationObserver(() => {
  for (const item of document.querySelectorAll("#uploads > li")) {
    window.seen.push({
      name: item.querySelector(".name").textContent,
      phase: item.dataset.phase,
      percent: Number(item.querySelector("progress").value),
      bytes: item.querySelector(".bytes").textContent,
    });
  }
}).observe(document.querySelector("#uploads"), {subtree: true, childList: true,
  attributes: true, characterData: true});
"""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_number(url: str) -> int | None:
    found = parse_qs(urlsplit(url).query).get("partNumber")
    return int(found[0]) if found else None


def part_puts(page: Page, local_stack: Any) -> list[int]:
    """The part numbers of the part PUTs the page sends to storage, in order (retries too)."""
    sent: list[int] = []

    def record(request: Request) -> None:
        number = part_number(request.url)
        if request.method == "PUT" and request.url.startswith(local_stack.endpoint_url) and number:
            sent.append(number)

    page.on("request", record)
    return sent


@pytest.fixture
def multipart_page(page: Page, page_url: str, sign_in: Any) -> Page:
    """The page told to send every file in parts, as it does above 100 MiB; alice signed in."""
    page.goto(f"{page_url}?multipart_threshold=1")
    sign_in(page, "alice")
    return page


def test_a_file_above_the_threshold_goes_in_parts_and_its_copy_is_a_duplicate(
    multipart_page: Page, local_stack: Any, tmp_path: Path
) -> None:
    # Given a file of two parts, and a copy of it under another name
    page = multipart_page
    data = os.urandom(TWO_PARTS)
    original, copy = tmp_path / "video.mp4", tmp_path / "video (copy).mp4"
    original.write_bytes(data)
    copy.write_bytes(data)
    parts = part_puts(page, local_stack)
    page.evaluate(WATCH_ROWS)

    # When both are picked
    page.get_by_label("Files to upload").set_input_files([original, copy])

    # Then the first is stored, with the file's own SHA-256, after sending each part once
    first, second = rows(page).nth(0), rows(page).nth(1)
    expect(status_of(first)).to_have_text("Stored")
    expect(first.locator(".sha256 code")).to_have_text(sha256(data))
    assert sorted(parts) == [1, 2]
    # And its progress bar reached 100% while the parts were going up
    uploading = [s for s in page.evaluate("window.seen") if s["phase"] == "uploading"]
    assert max(s["percent"] for s in uploading) == 100
    assert "17 MiB of 17 MiB (100%)" in {s["bytes"] for s in uploading}
    # And the copy is recognised as a duplicate without sending its bytes
    expect(status_of(second)).to_have_text(
        "Duplicate: already stored, nothing uploaded (17 MiB saved)"
    )
    assert sorted(parts) == [1, 2]
    # And the download gives back the very bytes
    assert downloaded(page, first) == (data, "video.mp4")


def test_a_part_that_fails_once_is_sent_again(
    multipart_page: Page, local_stack: Any, tmp_path: Path
) -> None:
    # Given a network that drops the first attempt of part 2
    page = multipart_page
    data = os.urandom(TWO_PARTS)
    path = tmp_path / "backup.tar"
    path.write_bytes(data)
    dropped: list[str] = []

    def drop_first(route: Route, request: Request) -> None:
        if request.method == "PUT" and not dropped:
            dropped.append(request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(lambda url: part_number(url) == 2, drop_first)
    parts = part_puts(page, local_stack)

    # When the file is uploaded
    page.get_by_label("Files to upload").set_input_files(path)

    # Then part 2 went twice and the file is stored whole
    expect(status_of(rows(page).first)).to_have_text("Stored")
    expect(rows(page).first.locator(".sha256 code")).to_have_text(sha256(data))
    assert len(dropped) == 1
    assert sorted(parts) == [1, 2, 2]


def test_a_part_whose_url_expired_gets_a_fresh_url(multipart_page: Page, local_stack: Any) -> None:
    # Given storage that says the first URL of part 1 has expired
    page = multipart_page
    refused: list[str] = []

    def expire_first(route: Route, request: Request) -> None:
        if request.method != "PUT" or refused:
            route.continue_()
            return
        refused.append(request.url)
        route.fulfill(
            status=403,
            headers={"Access-Control-Allow-Origin": "*", "Content-Type": "application/xml"},
            body="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        )

    page.route(lambda url: part_number(url) is not None, expire_first)
    asked: list[str | None] = []
    page.on("request", lambda r: asked.append(r.post_data) if r.url.endswith("/parts") else None)
    parts = part_puts(page, local_stack)

    # When a file is uploaded
    page.get_by_label("Files to upload").set_input_files(pick("late.bin", os.urandom(1000)))

    # Then the page asked the API for part 1 again and sent it with the new URL
    expect(status_of(rows(page).first)).to_have_text("Stored")
    assert len(refused) == 1
    assert [json.loads(body or "{}") for body in asked] == [{"part_numbers": [1]}] * 2
    assert parts == [1, 1]


def test_a_part_storage_keeps_refusing_cancels_the_upload(
    multipart_page: Page, local_stack: Any
) -> None:
    # Given storage that answers every part PUT with 503 SlowDown
    page = multipart_page
    refusals: list[str] = []

    def refuse(route: Route, request: Request) -> None:
        if request.method != "PUT":
            route.continue_()
            return
        refusals.append(request.url)
        route.fulfill(
            status=503,
            headers={"Access-Control-Allow-Origin": "*", "Content-Type": "application/xml"},
            body="<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>",
        )

    page.route(lambda url: part_number(url) is not None, refuse)
    aborts: list[str] = []
    page.on("request", lambda r: aborts.append(r.url) if r.method == "DELETE" else None)

    # When a file is uploaded
    page.get_by_label("Files to upload").set_input_files(pick("slow.bin", os.urandom(1000)))

    # Then after three attempts the row says what failed and what to do
    expect(status_of(rows(page).first)).to_have_text(
        "Failed: Part 1 of 1 failed after 3 attempts: The storage service refused the upload "
        "(SlowDown). Try again. The upload was cancelled; pick the file again to retry."
    )
    assert len(refusals) == 3
    # And the upload was aborted, so the API no longer waits for its bytes
    assert len(aborts) == 1
    upload_id = aborts[0].rsplit("/", 1)[1]
    assert get_upload(local_stack.api_url, upload_id)["status"] == "REJECTED"


@pytest.mark.parametrize("key", ["Enter", "Space"])
def test_the_drop_zone_opens_the_file_dialog_from_the_keyboard(
    page: Page, page_url: str, sign_in: Any, key: str
) -> None:
    # Playwright turns on file-chooser interception when the first listener subscribes, without
    # waiting for it: subscribe before the page loads so that it is on before the key press.
    page.on("filechooser", lambda _: None)
    page.goto(page_url)
    sign_in(page, "alice")
    # Signing in puts the focus on the drop zone, the next thing to use
    expect(page.get_by_role("button", name="Drop files here")).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press(key)
    assert chooser.value.is_multiple()


def test_the_api_url_from_a_link_is_remembered_until_cleared(
    page: Page, static_site: str, local_stack: Any
) -> None:
    # Given the page opened from a link that names the API
    page.goto(f"{static_site}/?api={quote(local_stack.api_url, safe='')}")
    current = page.locator("#api-current")
    expect(current).to_have_text(local_stack.api_url)

    # When it is opened again without the parameter, Then it still uses that API
    page.goto(f"{static_site}/")
    expect(current).to_have_text(local_stack.api_url)
    expect(page.get_by_label("API URL")).to_have_value(local_stack.api_url)

    # When the setting is emptied, Then the page uses its own site
    page.get_by_text("Settings").click()
    page.get_by_label("API URL").fill("")
    page.get_by_role("button", name="Save").click()
    expect(current).to_have_text(static_site)


def test_the_page_fits_a_phone_screen(
    browser: Browser, page_url: str, sign_in: Any, output_dir: Path
) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(page_url)
    sign_in(page, "alice")
    page.get_by_label("Files to upload").set_input_files(
        pick("a-file-with-a-rather-long-name-that-must-wrap.txt", os.urandom(100))
    )
    expect(status_of(rows(page).first)).to_have_text("Stored")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=output_dir / "upload-page-phone.png", full_page=True)
    context.close()
    assert overflow <= 0
