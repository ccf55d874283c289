"""Signing in on the upload page, in Chromium against the local stack: the form, what each user
sees, signing out, and tokens renewed before they expire."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from playwright.sync_api import FilePayload, Page, Request, expect

pytestmark = pytest.mark.e2e


def pick(name: str, data: bytes) -> FilePayload:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


def session_of(page: Page) -> dict[str, Any] | None:
    stored = page.evaluate("sessionStorage.getItem('onecopy.session')")
    return json.loads(stored) if stored else None


def bearer_tokens(page: Page, api_url: str) -> list[str]:
    """The Authorization header of every upload or admin call the page makes to the API."""
    seen: list[str] = []

    def record(request: Request) -> None:
        path = request.url.removeprefix(api_url)
        if path != request.url and path.startswith(("/uploads", "/admin/")):
            seen.append(request.headers.get("authorization", ""))

    page.on("request", record)
    return seen


def initiate_auth_flows(page: Page) -> list[str]:
    """The AuthFlow of every InitiateAuth call the page sends to Cognito."""
    flows: list[str] = []

    def record(request: Request) -> None:
        if request.headers.get("x-amz-target", "").endswith(".InitiateAuth"):
            flows.append(json.loads(request.post_data or "{}")["AuthFlow"])

    page.on("request", record)
    return flows


def test_signing_in_shows_the_upload_area_and_every_call_carries_the_id_token(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    # Given the page, not signed in
    page.goto(page_url)
    expect(page.get_by_role("button", name="Drop files here")).to_be_hidden()
    tokens = bearer_tokens(page, local_stack.api_url)
    flows = initiate_auth_flows(page)

    # When alice signs in with her password
    sign_in(page, "alice")

    # Then the page says who is signed in, offers the upload area, and hides the form
    expect(page.locator("#account")).to_have_text(
        "Signed in as alice Sign out", use_inner_text=True
    )
    expect(page.get_by_role("button", name="Drop files here")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_be_hidden()
    assert flows == ["USER_PASSWORD_AUTH"]
    # And the tokens are in this tab's session storage only, never in local storage
    session = session_of(page)
    assert session is not None and session["username"] == "alice"
    assert "eyJ" not in page.evaluate("JSON.stringify(localStorage)")
    # And an upload sends the IdToken on every API call
    page.get_by_label("Files to upload").set_input_files(pick("signed.txt", os.urandom(64)))
    expect(page.locator("#uploads").get_by_role("status")).to_have_text("Stored")
    assert tokens and set(tokens) == {f"Bearer {session['idToken']}"}


def test_a_wrong_password_is_refused_with_a_message(page: Page, page_url: str) -> None:
    # Given the sign-in form
    page.goto(page_url)
    # When alice types a wrong password
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Sign in").click()
    # Then the page says so, and stays signed out
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#account")).to_be_hidden()
    assert session_of(page) is None


def test_an_unknown_user_gets_the_same_message(page: Page, page_url: str) -> None:
    page.goto(page_url)
    page.get_by_label("Username").fill(f"nobody-{os.urandom(4).hex()}")
    page.get_by_label("Password").fill("whatever-1A")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")


def test_signing_out_forgets_the_tokens_and_what_was_shown(
    page: Page, page_url: str, sign_in: Any
) -> None:
    # Given alice signed in, with a file uploaded
    page.goto(page_url)
    sign_in(page, "alice")
    page.get_by_label("Files to upload").set_input_files(pick("mine.txt", os.urandom(64)))
    expect(page.locator("#uploads").get_by_role("status")).to_have_text("Stored")

    # When she signs out
    page.get_by_role("button", name="Sign out").click()

    # Then the form is back, with the focus in it, and nothing of hers is left on the page
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_focused()
    expect(page.locator("#uploads > li")).to_have_count(0)
    assert session_of(page) is None
    # And reloading the page does not sign her in again
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_reload_keeps_the_tab_signed_in(page: Page, page_url: str, sign_in: Any) -> None:
    page.goto(page_url)
    sign_in(page, "bob")
    page.reload()
    expect(page.locator("#account-name")).to_have_text("bob")


def test_the_admin_panel_is_hidden_from_alice(page: Page, page_url: str, sign_in: Any) -> None:
    admin_calls: list[str] = []
    page.on("request", lambda r: admin_calls.append(r.url) if "/admin/" in r.url else None)
    page.goto(page_url)
    sign_in(page, "alice")
    expect(page.get_by_role("heading", name="Statistics")).to_be_hidden()
    expect(page.get_by_role("table", name="Stored contents")).to_be_hidden()
    expect(page.locator("#health")).to_be_hidden()
    expect(page.locator("#account-role")).to_have_text("")
    assert admin_calls == []  # the page does not even ask


def test_the_admin_panel_is_shown_to_admin(page: Page, page_url: str, sign_in: Any) -> None:
    # Given admin signed in
    page.goto(page_url)
    sign_in(page, "admin")
    expect(page.locator("#account-role")).to_have_text(" (administrator)")
    # When admin uploads a file
    data = os.urandom(256)
    page.get_by_label("Files to upload").set_input_files(pick("admin.bin", data))
    expect(page.locator("#uploads").get_by_role("status")).to_have_text("Stored")
    sha = page.locator("#uploads .sha256 code").text_content() or ""
    # Then the statistics are shown, and the stored contents list it (and still do on reload)
    expect(page.get_by_role("heading", name="Statistics")).to_be_visible()
    expect(page.locator("#stat-files")).to_have_attribute("value", re.compile(r"^\d+$"))
    find_in_list(page, sha)
    page.get_by_role("button", name="Reload list").click()
    find_in_list(page, sha)


def find_in_list(page: Page, sha: str) -> None:
    """Pages through the stored contents (listed in the table's order, not by age) to ``sha``."""
    table = page.get_by_role("table", name="Stored contents")
    more = page.get_by_role("button", name="Show more")
    expect(page.locator("#hashes-status")).to_contain_text("shown")
    while table.get_by_role("rowheader", name=sha).count() == 0 and more.is_visible():
        shown = table.locator("tbody tr").count()
        more.click()
        expect(table.locator("tbody tr")).not_to_have_count(shown)
    expect(table.get_by_role("rowheader", name=sha)).to_be_visible()


def test_tokens_are_refreshed_before_they_expire(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    # Given alice signed in, on a page whose clock the test controls
    page.clock.install()
    page.goto(page_url)
    flows = initiate_auth_flows(page)
    tokens = bearer_tokens(page, local_stack.api_url)
    sign_in(page, "alice")
    first = session_of(page)
    assert first is not None

    # When the clock reaches 30 seconds before the tokens expire (timers run on the way)
    now = page.evaluate("Date.now()")
    page.clock.run_for(first["expiresAt"] - now - 30_000)

    # Then the page renewed them with the refresh token, without asking for the password
    expect(page.locator("#account-name")).to_have_text("alice")
    page.wait_for_function(
        "id => JSON.parse(sessionStorage.getItem('onecopy.session')).idToken !== id",
        arg=first["idToken"],
    )
    assert flows == ["USER_PASSWORD_AUTH", "REFRESH_TOKEN_AUTH"]
    second = session_of(page)
    assert second is not None
    assert second["refreshToken"] == first["refreshToken"]
    assert second["expiresAt"] > first["expiresAt"]
    # And API calls now carry the new IdToken (the file list loaded at sign-in used the first)
    tokens.clear()
    page.get_by_label("Files to upload").set_input_files(pick("later.txt", os.urandom(64)))
    expect(page.locator("#uploads").get_by_role("status")).to_have_text("Stored")
    assert set(tokens) == {f"Bearer {second['idToken']}"}


def test_a_401_from_the_api_sends_the_person_back_to_sign_in(
    page: Page, page_url: str, sign_in: Any
) -> None:
    # Given alice signed in, and an API that no longer accepts her token (revoked, say)
    page.goto(page_url)
    sign_in(page, "alice")
    page.route(
        f"{page_url}uploads",
        lambda route: route.fulfill(status=401, json={"message": "Unauthorized"}),
    )
    # When she picks a file
    page.get_by_label("Files to upload").set_input_files(pick("late.txt", b"x"))
    # Then the page asks her to sign in again, saying why
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Your session has ended. Sign in again.")
    assert session_of(page) is None
