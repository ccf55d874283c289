"""The upload page in Chromium against the local stack: what a person sees and gets back."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import Browser, Locator, Page, Request, Route, expect

pytestmark = pytest.mark.e2e

FINAL = ("Stored", "Duplicate", "Rejected", "Failed")


def pick(name: str, data: bytes, mime: str = "application/octet-stream") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def stats(api_url: str) -> dict[str, int]:
    response = requests.get(f"{api_url}/admin/stats", timeout=10)
    response.raise_for_status()
    counters: dict[str, int] = response.json()
    return counters


def rows(page: Page) -> Locator:
    return page.get_by_role("listitem")


def status_of(row: Locator) -> Locator:
    return row.get_by_role("status")


@pytest.fixture
def upload_page(page: Page, page_url: str) -> Page:
    page.goto(page_url)
    expect(page.locator("#stat-files")).to_have_attribute("value", re.compile(r"^\d+$"))
    return page


def test_two_files_and_a_copy_are_stored_once_and_counted(
    upload_page: Page, local_stack: Any, output_dir: Path
) -> None:
    # Given two distinct contents, and a copy of the first under another name
    page = upload_page
    report, photo = os.urandom(3000), os.urandom(5000)
    before = stats(local_stack.api_url)

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

    # And each download link gives back the very bytes, under the row's own name
    for index, data, name in [(0, report, "report.pdf"), (1, photo, "photo.jpg")]:
        link = rows(page).nth(index).get_by_role("link", name="Download")
        got = page.request.get(link.get_attribute("href") or "")
        assert got.ok
        assert got.body() == data
        assert name in got.headers["content-disposition"]
    copy = rows(page).nth(2).get_by_role("link", name="Download")
    assert page.request.get(copy.get_attribute("href") or "").body() == report

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
    expect(rows(page).first.get_by_role("link", name="Download")).to_be_hidden()


def test_an_unreachable_api_says_what_to_check(page: Page, static_site: str) -> None:
    # Given an API URL where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    page.goto(f"{static_site}/?api={quote(dead, safe='')}")
    advice = f"Cannot reach the API at {dead}. Check your connection, or the API URL in Settings."

    # When a file is picked
    page.get_by_label("Files to upload").set_input_files(pick("a.txt", b"hello"))

    # Then both the row and the statistics panel say which API failed and what to check
    expect(status_of(rows(page).first)).to_have_text(f"Failed: {advice}")
    expect(page.locator("#stats-error")).to_have_text(f"Statistics unavailable: {advice}")


def test_the_api_validation_message_is_shown(upload_page: Page) -> None:
    # Given a file whose type the API refuses; When it is picked
    upload_page.get_by_label("Files to upload").set_input_files(
        pick("odd.bin", b"odd", mime="nonsense")
    )
    # Then the row shows the API's own message
    expect(status_of(rows(upload_page).first)).to_have_text(
        "Failed: body.content_type: Value error, content_type must be a MIME type such as "
        "application/pdf"
    )


def test_a_file_the_api_wants_in_parts_is_explained(upload_page: Page, page_url: str) -> None:
    # Given an API that answers with multipart instructions (asked for here whatever the size)
    def ask_for_parts(route: Route, request: Request) -> None:
        body = json.loads(request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "multipart": True}))

    upload_page.route(f"{page_url}uploads", ask_for_parts)
    # When a file is picked
    upload_page.get_by_label("Files to upload").set_input_files(pick("big.iso", os.urandom(64)))
    # Then the row says the page cannot do that yet, and what to use instead
    expect(status_of(rows(upload_page).first)).to_have_text(
        "Failed: Files this large are uploaded in parts, which this page cannot do yet. "
        "Upload this one with the onecopy command-line tool (onecopy upload)."
    )


@pytest.mark.parametrize("key", ["Enter", "Space"])
def test_the_drop_zone_opens_the_file_dialog_from_the_keyboard(
    page: Page, page_url: str, key: str
) -> None:
    # Playwright turns on file-chooser interception when the first listener subscribes, without
    # waiting for it: subscribe before the page loads so that it is on before the key press.
    page.on("filechooser", lambda _: None)
    page.goto(page_url)
    page.get_by_role("button", name="Drop files here").focus()
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


def test_the_page_fits_a_phone_screen(browser: Browser, page_url: str, output_dir: Path) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(page_url)
    page.get_by_label("Files to upload").set_input_files(
        pick("a-file-with-a-rather-long-name-that-must-wrap.txt", os.urandom(100))
    )
    expect(status_of(rows(page).first)).to_have_text("Stored")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=output_dir / "upload-page-phone.png", full_page=True)
    context.close()
    assert overflow <= 0
