"""The upload page in Chromium against the local stack: what a person sees and gets back.

Every test signs in through the page's own form (the `sign_in` fixture): as alice, or as admin
where the statistics panel is needed (only admins see it). The stack lives for the whole session,
so a test that reads "Your files" names its files with a tag of its own and filters on it."""

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
from playwright.sync_api import (
    Browser,
    FilePayload,
    Locator,
    Page,
    Request,
    Response,
    Route,
    expect,
)

from tests.localstack import create_upload, get_upload, upload

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
    """The rows of the files picked in this tab."""
    return page.locator("#uploads").get_by_role("listitem")


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


# --- your files: the list, its filters, and deleting ------------------------------------------


def new_tag() -> str:
    """A filename prefix no other test uses."""
    return f"t{os.urandom(5).hex()}"


def your_files(page: Page) -> Locator:
    return page.get_by_role("table", name="Your files")


def listed_names(page: Page) -> Locator:
    """The names in "Your files", top to bottom (each row's header cell)."""
    return your_files(page).locator("tbody").get_by_role("rowheader")


def listed(page: Page, name: str) -> Locator:
    return your_files(page).get_by_role("row", name=name)


def upload_in_tab(page: Page, name: str, data: bytes, final: str = "Stored") -> None:
    """Picks one file and waits until its row in the tab is final."""
    page.get_by_label("Files to upload").set_input_files(pick(name, data))
    row = rows(page).filter(has_text=name)
    expect(status_of(row)).to_have_text(re.compile(f"^{final}"))


def filter_names(page: Page, prefix: str) -> None:
    """Types a name prefix, and returns once the API answered the first list call it makes."""

    def asks_for_it(response: Response) -> bool:
        query = parse_qs(urlsplit(response.url).query)
        return "/uploads?" in response.url and query.get("prefix") == [prefix]

    with page.expect_response(asks_for_it):
        page.get_by_label("Name starts with").fill(prefix)


def list_requests(page: Page, api_url: str) -> list[Request]:
    """Every GET /uploads?... the page sends, in order."""
    sent: list[Request] = []
    page.on(
        "request",
        lambda r: (
            sent.append(r)
            if r.method == "GET" and r.url.startswith(f"{api_url}/uploads?")
            else None
        ),
    )
    return sent


def id_token(page: Page) -> str:
    token: str = page.evaluate("JSON.parse(sessionStorage.getItem('onecopy.session')).idToken")
    return token


def test_your_files_lists_this_tab_s_uploads_newest_first_and_no_one_else_s(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    # Given bob holds a file named with the same tag
    tag = new_tag()
    upload(
        local_stack.api_url,
        os.urandom(300),
        filename=f"{tag}-bob.txt",
        headers=local_stack.auth("bob"),
    )
    page.goto(page_url)
    asked = list_requests(page, local_stack.api_url)
    sign_in(page, "alice")
    expect(page.get_by_role("heading", name="Your files")).to_be_visible()

    # When alice uploads three files, one after the other
    names = [f"{tag}-{n}.txt" for n in ("one", "two", "three")]
    for name in names:
        upload_in_tab(page, name, os.urandom(200))

    # Then each joins the top of her list as it finishes, newest first, with its details
    expect(listed_names(page).nth(0)).to_have_text(names[2])
    expect(listed_names(page).nth(1)).to_have_text(names[1])
    expect(listed_names(page).nth(2)).to_have_text(names[0])
    newest = listed(page, names[2])
    expect(newest.get_by_role("cell").nth(0)).to_have_text("200 B")
    expect(newest.get_by_role("cell").nth(1)).to_have_text("Stored")
    expect(newest.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    # And the list the API gives for her tag is the same: hers only, newest first
    filter_names(page, tag)
    expect(listed_names(page)).to_have_text(names[::-1])
    expect(page.locator("#files-status")).to_have_text("3 files.")
    # And every list call carried her token, as the page's other calls do
    assert asked and {r.headers.get("authorization") for r in asked} == {f"Bearer {id_token(page)}"}
    assert parse_qs(urlsplit(asked[-1].url).query)["prefix"] == [tag]
    # And a listed file downloads as the tab's own row does
    assert downloaded(page, newest)[1] == names[2]

    # When she signs out and bob signs in on the same page
    page.get_by_role("button", name="Sign out").click()
    expect(your_files(page)).to_be_hidden()
    assert page.locator("#files tbody tr").count() == 0
    sign_in(page, "bob")
    filter_names(page, tag)
    # Then he sees his file only
    expect(listed_names(page)).to_have_text([f"{tag}-bob.txt"])


def test_the_status_filter_and_the_name_prefix_narrow_the_list(
    upload_page: Page, local_stack: Any
) -> None:
    # Given alice holds a stored file, a copy of it, and an upload still waiting for its bytes
    page = upload_page
    tag = new_tag()
    data = os.urandom(500)
    upload_in_tab(page, f"{tag}-a-original.bin", data)
    upload_in_tab(page, f"{tag}-b-copy.bin", data, final="Duplicate")
    waiting = create_upload(local_stack.api_url, os.urandom(50), filename=f"{tag}-c-waiting.bin")
    assert waiting.status_code == 201, waiting.text
    asked = list_requests(page, local_stack.api_url)

    # When the list is narrowed to her tag
    filter_names(page, tag)
    # Then it shows all three, newest first, each with its status
    expect(listed_names(page)).to_have_text(
        [f"{tag}-c-waiting.bin", f"{tag}-b-copy.bin", f"{tag}-a-original.bin"]
    )
    expect(listed(page, f"{tag}-c-waiting.bin").get_by_role("cell").nth(1)).to_have_text("Pending")
    expect(
        listed(page, f"{tag}-c-waiting.bin").get_by_role("button", name="Download")
    ).to_be_hidden()

    # When a status is chosen, Then only the files of that status stay
    status = page.get_by_label("Status")
    for value, name in [
        ("STORED", "a-original"),
        ("DUPLICATE", "b-copy"),
        ("PENDING", "c-waiting"),
    ]:
        status.select_option(value)
        expect(listed_names(page)).to_have_text([f"{tag}-{name}.bin"])
        query = parse_qs(urlsplit(asked[-1].url).query)
        assert (query["status"], query["prefix"]) == ([value], [tag])
    status.select_option("REJECTED")
    expect(page.locator("#files-status")).to_have_text("No files match.")
    expect(listed_names(page)).to_have_count(0)

    # When all statuses are shown again but the prefix is longer, Then it narrows by name
    status.select_option("")
    filter_names(page, f"{tag}-b")
    expect(listed_names(page)).to_have_text([f"{tag}-b-copy.bin"])
    assert "status" not in parse_qs(urlsplit(asked[-1].url).query)


def test_the_list_comes_page_by_page_until_the_api_says_it_ended(
    upload_page: Page, local_stack: Any
) -> None:
    # Given alice holds seven files of one tag, and a page that asks for one item at a time
    page = upload_page
    tag = new_tag()
    names = [f"{tag}-{n}.txt" for n in range(7)]
    for name in names:
        upload(local_stack.api_url, os.urandom(100), filename=name)
    answers: list[dict[str, Any]] = []

    def one_at_a_time(route: Route, request: Request) -> None:
        url = request.url.replace("limit=50", "limit=1")
        response = route.fetch(url=url)
        answers.append(response.json())
        route.fulfill(response=response)

    page.route(lambda url: url.startswith(f"{local_stack.api_url}/uploads?"), one_at_a_time)

    # When the list is narrowed to the tag
    filter_names(page, tag)
    # Then one load asks for a few pages (each short of a screenful), and offers the rest
    more = page.get_by_role("button", name="Load more")
    loaded = page.locator("#files-more")  # found even once hidden: enabled again when done
    expect(loaded).to_be_enabled()
    expect(more).to_be_visible()
    expect(page.locator("#files-status")).to_contain_text("shown; more follow.")
    assert 1 < len(answers) <= 5
    assert listed_names(page).count() < 7
    assert all(len(answer["items"]) <= 1 for answer in answers)
    # And "Load more" goes on from the last token until the API answers null
    for _ in range(7):
        if not more.is_visible():
            break
        more.click()
        expect(loaded).to_be_enabled()
    expect(more).to_be_hidden()
    expect(listed_names(page)).to_have_text(names[::-1])
    expect(page.locator("#files-status")).to_have_text("7 files.")
    assert answers[-1]["last_evaluated_key"] is None
    assert all(answer["last_evaluated_key"] for answer in answers[:-1])


def test_deleting_a_file_asks_first_then_removes_its_row(
    upload_page: Page, local_stack: Any
) -> None:
    # Given two files of alice's in the list
    page = upload_page
    tag = new_tag()
    kept = upload(local_stack.api_url, os.urandom(100), filename=f"{tag}-kept.txt")
    gone = upload(local_stack.api_url, os.urandom(100), filename=f"{tag}-gone.txt")
    filter_names(page, tag)
    expect(listed_names(page)).to_have_text([f"{tag}-gone.txt", f"{tag}-kept.txt"])
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)

    # When she presses its Delete button
    listed(page, f"{tag}-gone.txt").get_by_role("button", name="Delete").click()
    # Then a dialog asks first, with the safe choice focused
    dialog = page.get_by_role("dialog", name=f"Delete {tag}-gone.txt?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("is deleted from your files")
    expect(dialog.get_by_role("button", name="Keep")).to_be_focused()
    assert deletes == []

    # When she confirms
    dialog.get_by_role("button", name="Delete").click()
    # Then the row goes, the page says so, and the focus moves to the next row's Delete
    expect(listed_names(page)).to_have_text([f"{tag}-kept.txt"])
    expect(page.locator("#files-status")).to_have_text(f"Deleted {tag}-gone.txt. 1 file.")
    expect(listed(page, f"{tag}-kept.txt").get_by_role("button", name="Delete")).to_be_focused()
    assert deletes == [f"{local_stack.api_url}/uploads/{gone['upload_id']}"]
    # And the API no longer knows it; the other file is untouched
    answer = requests.get(
        f"{local_stack.api_url}/uploads/{gone['upload_id']}", headers=local_stack.auth(), timeout=10
    )
    assert answer.status_code == 404
    assert get_upload(local_stack.api_url, kept["upload_id"])["status"] == "STORED"


@pytest.mark.parametrize("dismiss", ["Keep", "Escape"])
def test_dismissing_the_dialog_deletes_nothing(
    upload_page: Page, local_stack: Any, dismiss: str
) -> None:
    # Given a file of alice's in the list
    page = upload_page
    tag = new_tag()
    held = upload(local_stack.api_url, os.urandom(100), filename=f"{tag}-mine.txt")
    filter_names(page, tag)
    row = listed(page, f"{tag}-mine.txt")
    deletes: list[str] = []
    page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)

    # When she opens the dialog, then keeps the file (the button, or Escape)
    delete = row.get_by_role("button", name="Delete")
    delete.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    if dismiss == "Keep":
        dialog.get_by_role("button", name="Keep").click()
    else:
        page.keyboard.press("Escape")

    # Then the dialog closes, the focus is back on the button, and nothing was deleted
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    expect(listed_names(page)).to_have_text([f"{tag}-mine.txt"])
    assert deletes == []
    assert get_upload(local_stack.api_url, held["upload_id"])["status"] == "STORED"


def test_deleting_a_pending_upload_cancels_it_then_removes_it(
    upload_page: Page, local_stack: Any
) -> None:
    # Given an upload of alice's still waiting for its bytes
    page = upload_page
    tag = new_tag()
    created = create_upload(local_stack.api_url, os.urandom(80), filename=f"{tag}-late.bin")
    assert created.status_code == 201, created.text
    upload_id = created.json()["upload_id"]
    filter_names(page, tag)
    row = listed(page, f"{tag}-late.bin")
    expect(row.get_by_role("cell").nth(1)).to_have_text("Pending")

    # When she deletes it, the dialog says it cancels the upload
    row.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Cancel the upload of {tag}-late.bin?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel upload").click()

    # Then it stays, cancelled, as the API now has it
    expect(row.get_by_role("cell").nth(1)).to_have_text("Rejected: the upload was cancelled")
    expect(page.locator("#files-status")).to_have_text(
        f"Upload of {tag}-late.bin cancelled. 1 file."
    )
    view = get_upload(local_stack.api_url, upload_id)
    assert (view["status"], view.get("reason")) == ("REJECTED", "aborted")

    # When she deletes it again, Then it is gone
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name=f"Remove {tag}-late.bin?").get_by_role(
        "button", name="Remove"
    ).click()
    expect(listed_names(page)).to_have_count(0)
    answer = requests.get(
        f"{local_stack.api_url}/uploads/{upload_id}", headers=local_stack.auth(), timeout=10
    )
    assert answer.status_code == 404


@pytest.mark.parametrize(
    ("status", "body", "shown", "row_stays"),
    [
        (409, {"message": "The bytes are being stored right now."}, "error", True),
        (404, {"message": "Not Found"}, "note", False),
    ],
)
def test_a_delete_the_api_refuses_or_that_came_too_late_is_explained(
    upload_page: Page,
    local_stack: Any,
    status: int,
    body: dict[str, str],
    shown: str,
    row_stays: bool,
) -> None:
    # Given a file in the list, and an API that answers its DELETE with `status`
    # (409: its bytes are being stored right now; 404: it was deleted elsewhere meanwhile)
    page = upload_page
    tag = new_tag()
    held = upload(local_stack.api_url, os.urandom(100), filename=f"{tag}-busy.txt")
    filter_names(page, tag)
    row = listed(page, f"{tag}-busy.txt")
    expect(row).to_be_visible()
    page.route(
        f"{local_stack.api_url}/uploads/{held['upload_id']}",
        lambda route, request: (
            route.fulfill(status=status, json=body)
            if request.method == "DELETE"
            else route.continue_()
        ),
    )

    # When she deletes it
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()

    # Then a 409 keeps the row and shows the API's message as an error; a 404 drops the row
    if shown == "error":
        expect(page.get_by_role("alert")).to_have_text(body["message"])
        expect(row.get_by_role("button", name="Delete")).to_be_focused()
    else:
        expect(page.locator("#files-status")).to_have_text(
            f"{tag}-busy.txt was already deleted. No files match."
        )
    expect(row).to_have_count(1 if row_stays else 0)
