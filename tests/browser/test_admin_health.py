"""The admin panel's Health section, in Chromium against the local stack: loaded when the panel
opens, what needs attention listed first, and refreshed on demand."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from onecopy_cli.output import human_duration

pytestmark = pytest.mark.e2e

NOT_LOADED = "\N{EN DASH}"
DEAD_LETTERS = "2 message(s) in the dead-letter queue (DeadLetterQueueAlarm)"
DRIFT = "the last reconciliation found drift 7 (CounterDriftAlarm)"


def health_section(page: Page) -> Locator:
    return page.get_by_role("region", name="Health")


def field(page: Page, name: str) -> Locator:
    """The value (dd) of one field of the Health section, found by its label (dt)."""
    return (
        health_section(page)
        .locator("div")
        .filter(has=page.locator("dt", has_text=re.compile(f"^{re.escape(name)}$")))
        .locator("dd")
    )


def as_browser_iso(value: str) -> str:
    """An API time as Date.toISOString() writes it (milliseconds, Z)."""
    at = datetime.fromisoformat(value).astimezone(UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_the_health_section_shows_the_local_stacks_values(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    # Given a reconciliation that has run on the stack
    local_stack.invoke("ReconcileFunction", {})
    page.goto(page_url)

    # When admin signs in (the admin panel opens and asks for the health view)
    health_url = f"{local_stack.api_url}/admin/health"
    with page.expect_response(health_url) as answer:
        sign_in(page, "admin")
    health = answer.value.json()
    assert answer.value.status == 200, health

    # Then the Health section shows what the stack answered: the verdict first
    section = health_section(page)
    expect(section).to_be_visible()
    summary = section.get_by_role("status")
    if health["ok"]:
        expect(summary).to_have_text("Nothing needs attention.")
        expect(section.get_by_role("list")).to_be_hidden()
    else:
        count = len(health["attention"])
        expect(summary).to_have_text(re.compile(f"^{count} items? needs? attention:$"))
        expect(section.get_by_role("listitem")).to_have_text(health["attention"])
    # And the queue, the dead letters, the last reconciliation and the collector's backlog
    ingest, dead = health["ingest_queue"], health["dead_letter_queue"]
    expect(field(page, "Waiting in queue")).to_have_text(f"{ingest['waiting']:,}")
    expect(field(page, "In flight")).to_have_text(f"{ingest['in_flight']:,}")
    age = ingest["oldest_message_age_seconds"]
    if age is not None:
        oldest = human_duration(age)  # the CLI's words for a duration are the page's too
    else:
        oldest = "None waiting" if ingest["waiting"] == 0 else "Unknown (no recent metric)"
    expect(field(page, "Oldest message")).to_have_text(oldest)
    if dead["in_flight"]:
        expect(field(page, "Dead letters")).to_have_text(
            f"{dead['waiting']:,} waiting, {dead['in_flight']:,} in flight"
        )
    else:
        expect(field(page, "Dead letters")).to_have_text(f"{dead['waiting']:,}")
    reconciliation = health["reconciliation"]
    verdict = "Clean" if reconciliation["clean"] else r"Drift \d+ \((not )?repaired\)"
    expect(field(page, "Last reconciliation")).to_have_text(re.compile(rf"^{verdict}, \d+ s ago$"))
    expect(field(page, "Last reconciliation").locator("time")).to_have_attribute(
        "datetime", as_browser_iso(reconciliation["at"])
    )
    collection = health["collection"]
    assert collection["grace_seconds"] == 86400  # the local stack's default: "1 d"
    expect(field(page, "Collector backlog")).to_have_text(
        f"{collection['unreferenced']:,} unreferenced, {collection['due']:,} due (grace 1 d)"
    )
    if collection["last_run_at"] is None:
        expect(field(page, "Last collection")).to_have_text("Never run")
    else:
        expect(field(page, "Last collection")).to_have_text(re.compile(r"^\d+ removed.*, .+ ago$"))
    expect(section.locator("#health-checked")).to_have_text(re.compile(r"^Checked .+\.$"))


def test_what_needs_attention_is_listed_first_and_refresh_asks_again(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    # Given a stack whose health view (faked here) reports dead letters and drift
    health_url = f"{local_stack.api_url}/admin/health"
    troubled = {
        "ok": False,
        "attention": [DEAD_LETTERS, DRIFT],
        "ingest_queue": {"waiting": 12, "in_flight": 3, "oldest_message_age_seconds": 420.0},
        "dead_letter_queue": {"waiting": 2, "in_flight": 0},
        "reconciliation": {
            "at": "2025-11-25T14:05:12.123456Z",
            "clean": False,
            "drift": 7,
            "repaired": False,
        },
        "collection": {
            "unreferenced": 40,
            "due": 9,
            "grace_seconds": 3600,
            "last_run_at": None,
            "last_collected": None,
            "last_run_complete": None,
        },
    }
    page.route(health_url, lambda route: route.fulfill(json=troubled))
    page.goto(page_url)

    # When admin signs in
    sign_in(page, "admin")

    # Then the section says how many things need attention and lists them, in the API's words
    section = health_section(page)
    expect(section.get_by_role("status")).to_have_text("2 items need attention:")
    attention = section.get_by_role("list", name="2 items need attention:")
    expect(attention.get_by_role("listitem")).to_have_text([DEAD_LETTERS, DRIFT])
    # And the fields they concern are marked, the others not
    expect(field(page, "Dead letters")).to_have_text("2")
    expect(field(page, "Dead letters")).to_have_class(re.compile(r"\balert\b"))
    expect(field(page, "Last reconciliation")).to_have_text(
        re.compile(r"^Drift 7 \(not repaired\), \d+ d( \d+ h)? ago$")
    )
    expect(field(page, "Last reconciliation")).to_have_class(re.compile(r"\balert\b"))
    expect(field(page, "Oldest message")).to_have_text("7 min")
    expect(field(page, "Oldest message")).not_to_have_class(re.compile(r"\balert\b"))
    expect(field(page, "Collector backlog")).to_have_text("40 unreferenced, 9 due (grace 1 h)")
    expect(field(page, "Last collection")).to_have_text("Never run")

    # When the trouble is gone and admin presses Refresh health
    page.unroute(health_url)
    with page.expect_response(health_url) as answer:
        section.get_by_role("button", name="Refresh health").click()
    health = answer.value.json()

    # Then the section shows the stack's own answer
    expect(field(page, "Waiting in queue")).to_have_text(f"{health['ingest_queue']['waiting']:,}")
    if health["ok"]:
        expect(section.get_by_role("status")).to_have_text("Nothing needs attention.")
        expect(section.get_by_role("list")).to_be_hidden()
        expect(field(page, "Dead letters")).not_to_have_class(re.compile(r"\balert\b"))


def test_a_failed_health_call_is_said_and_the_rest_of_the_panel_still_works(
    page: Page, page_url: str, sign_in: Any, local_stack: Any
) -> None:
    health_url = f"{local_stack.api_url}/admin/health"
    page.route(
        health_url, lambda route: route.fulfill(status=503, json={"message": "Service Unavailable"})
    )
    page.goto(page_url)
    sign_in(page, "admin")
    section = health_section(page)
    expect(section.get_by_role("alert")).to_have_text(
        "Health unavailable: The API failed (Service Unavailable). Try again later."
    )
    expect(field(page, "Waiting in queue")).to_have_text(NOT_LOADED)
    expect(page.locator("#stat-files")).to_have_attribute("value", re.compile(r"^\d+$"))
