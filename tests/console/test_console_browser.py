"""The delivery console in a real browser (Playwright driving Debian's headless Chromium), against
a real ingress, worker and gateway stub: log in, see events, open one, replay a dead letter and see
it delivered, and a hostile payload and header shown as inert text. Screenshots: tests/artifacts/."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, expect, sync_playwright

from relay.protocol.actions import action_id
from relay.store import keys
from tests.conftest import GENERIC_TOKEN, Relay, dump, wait_until
from tests.paths import ROOT

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
CONSOLE_TOKEN = "console-token-for-browser-tests"
HOSTILE = "<script>window.__pwned=1</script>"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is absent (apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def post_generic(relay: Relay, delivery: str, payload: Any, headers: dict[str, str] | None = None) -> str:
    response = relay.post(
        "/hooks/generic",
        dump(payload),
        {
            "Authorization": f"Bearer {GENERIC_TOKEN}",
            "Content-Type": "application/json",
            "X-Request-Id": delivery,
            **(headers or {}),
        },
    )
    assert response.status_code == 202, response.text
    return str(response.json()["eventId"])


def test_console_in_a_browser(
    relay_factory: Callable[..., Relay], redis_client: redis.Redis, browser: Browser
) -> None:
    relay = relay_factory(
        console={"enabled": True, "token": CONSOLE_TOKEN},
        mappings=[
            {
                "match": {"path": "generic"},
                "action": "agent",
                "name": "CI",
                "messageTemplate": "Build {{payload.pipeline}}: {{payload.title}}",
            }
        ],
    )
    stub = relay.start_stub()
    relay.start_ingress()
    relay.start_worker()

    # One action the gateway refuses for good (a dead letter), then one hostile event delivered.
    stub.control(fail=[400])
    dead_event = post_generic(relay, "build-41", {"pipeline": "main", "title": "flaky build"})
    dead_action = _only_action(redis_client, dead_event)
    wait_until(lambda: redis_client.hget(keys.action(dead_action), "state") == b"dead", timeout=20)
    hostile_event = post_generic(
        relay, "build-42", {"pipeline": "main", "title": HOSTILE}, {"X-Custom-Note": HOSTILE}
    )
    hostile_action = _only_action(redis_client, hostile_event)
    wait_until(lambda: redis_client.hget(keys.action(hostile_action), "state") == b"delivered", timeout=20)

    page = browser.new_page(viewport={"width": 1200, "height": 800})
    page.goto(f"{relay.url}/console")
    expect(page.get_by_role("heading", name="Delivery console")).to_be_visible()
    page.get_by_label("Console token").fill("wrong-token-wrong-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    page.get_by_label("Console token").fill(CONSOLE_TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Events")).to_be_visible()
    expect(page.get_by_role("link", name=dead_event)).to_be_visible()
    expect(page.get_by_role("link", name=hostile_event)).to_be_visible()
    expect(page.locator("svg.chart")).to_be_visible()
    shot(page, "events")

    # The hostile event: its payload and header are shown as text, and nothing ran.
    page.get_by_role("link", name=hostile_event).click()
    expect(page.get_by_role("heading", name=f"Event {hostile_event}")).to_be_visible()
    expect(page.locator("pre.payload")).to_contain_text(HOSTILE)
    expect(page.locator("table.headers")).to_contain_text(HOSTILE)
    expect(page.locator("table.headers")).to_contain_text("‹redacted›")  # the Authorization header
    expect(page.locator("article.action")).to_contain_text("delivered")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    shot(page, "event")

    # The dead letter: replay it from the dead-letter page, and see the gateway receive it.
    page.get_by_role("link", name="Dead letters").click()
    expect(page.locator("table.rows")).to_contain_text("permanent error")
    page.get_by_label(f"select {dead_action}").check()
    shot(page, "dead")
    page.get_by_role("button", name="Replay selected").click()
    expect(page.get_by_role("status")).to_have_text("Replayed 1 of 1 dead letter(s).")
    wait_until(lambda: [r for r in stub.runs() if r.get("key") == dead_action], timeout=20)
    page.goto(f"{relay.url}/console/events/{dead_event}")
    expect(page.locator("article.action")).to_contain_text("delivered")
    expect(page.locator("article.action")).to_contain_text("replayed 1×")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    shot(page, "replayed")

    page.goto(f"{relay.url}/console/system")
    expect(page.get_by_role("heading", name="Workers (1)")).to_be_visible()
    shot(page, "system")
    page.goto(f"{relay.url}/console")
    shot(page, "overview")


def _only_action(r: redis.Redis, event_id: str) -> str:
    fields = r.hmget(keys.event(event_id), "source", "delivery_id")
    return action_id(fields[0].decode(), fields[1].decode(), 0)
