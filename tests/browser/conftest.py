"""Browser tests: Debian's Chromium driven by Playwright, against the local stack.

Chromium comes from apt (`apt-get install chromium`), never from `playwright install` (it
downloads a browser build, which fails here). Without it these tests fail, they do not skip.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

CHROMIUM = os.environ.get("ONECOPY_CHROMIUM", "/usr/bin/chromium")

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
WEB = Path(__file__).resolve().parents[2] / "web"

# The pipeline (PUT, S3 event, SQS, worker) takes a few seconds locally, not Playwright's 5 s.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
            "(or point ONECOPY_CHROMIUM at a Chromium binary). Do not run `playwright install`.",
            pytrace=False,
        )
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "headless": True,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


class _StaticHandler(SimpleHTTPRequestHandler):
    """web/ as any static host serves it (the page must not depend on PageFunction's server)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def static_site() -> Iterator[str]:
    """web/ on its own loopback port: the page served apart from the API, as a static host would."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_StaticHandler, directory=str(WEB)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def page_url(local_stack: Any) -> str:
    """The upload page as the product serves it: by PageFunction, at the API's root."""
    return f"{local_stack.api_url}/"


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


SignIn = Callable[[Page, str], None]


@pytest.fixture(scope="session")
def sign_in(local_stack: Any) -> SignIn:
    """Sign a page in through its own form (GET /auth/config, then Cognito's InitiateAuth), as a
    person does; returns once the page shows who is signed in."""

    def run(page: Page, user: str = "alice") -> None:
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.get_by_label("Username").fill(user)
        page.get_by_label("Password").fill(local_stack.password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("#account-name")).to_have_text(user)

    return run
