"""The operator's day in a real browser: Debian's Chromium, headless, driven by Playwright, against
a real LogSense server (uvicorn on 127.0.0.1, worker on, MiniLM, a tiny trained LogGPT).

Log in, open the queue, open an anomaly, press "Mark normal", see its row leave the queue, and
check through the API that the same line now scores normal; a row button and a bulk action in
place; "Retrain now" with its progress bar. Every page at 1280x800 and 390 px wide: no
horizontal overflow, no console errors, no request to another host. Screenshots go to
test-artifacts/ (git-ignored).

Skips, saying why, where /usr/bin/chromium is missing or Playwright cannot launch it
(Playwright's own browser download cannot work on these machines).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from .live import ODD_LEASE, PASSWORD, USERNAME, LiveServer, post, seed_demo

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian's chromium package; .ci/run installs it): no browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not installed ({exc}): pip install -e '.[test]'")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    except Exception as exc:  # noqa: BLE001
        pw.stop()
        pytest.skip(f"Playwright cannot launch {CHROMIUM}: {type(exc).__name__}: {str(exc)[:300]}")
    try:
        yield b
    finally:
        b.close()
        pw.stop()


@pytest.fixture(scope="module")
def live(browser, tmp_path_factory) -> Iterator[tuple[LiveServer, dict]]:
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("LOGSENSE_"):
                mp.delenv(name)
        server = LiveServer(tmp_path_factory.mktemp("live") / "data").start()
        try:
            yield server, seed_demo(server)
        finally:
            server.stop()


class Watched:
    """A browser context that records console errors and every request to a host not local."""

    def __init__(self, browser, base: str, viewport: dict) -> None:  # noqa: ANN001
        self.base = base
        self.errors: list[str] = []
        self.outside: list[str] = []
        self.context = browser.new_context(viewport=viewport)
        self.context.on("request", self._request)
        self.context.set_default_timeout(20_000)
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def _request(self, request) -> None:  # noqa: ANN001
        url = urlparse(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        if url.hostname not in LOCAL_HOSTS:
            self.outside.append(request.url)

    def go(self, path: str) -> object:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("load")
        return self.page

    def login(self, path: str = "/anomalies") -> object:
        page = self.go(path)
        assert "/login" in page.url, page.url  # not logged in yet: the login page, remembering where to go
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Log in')")
        page.wait_for_url(self.base + path)
        return page

    def fits(self, what: str) -> None:
        """Usable at this width: nothing sticks out sideways (the page never scrolls horizontally)."""
        width = self.page.evaluate("document.documentElement.scrollWidth")
        inner = self.page.evaluate("window.innerWidth")
        assert width <= inner, f"{what}: the page is {width} px wide in a {inner} px window"

    def shot(self, name: str, full_page: bool = True) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name), full_page=full_page)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], self.errors
        assert self.outside == [], f"requests to other hosts: {self.outside}"


def _total(page) -> int:  # noqa: ANN001
    return int(page.locator("#queue-total").inner_text())


def test_mark_normal_in_the_browser_and_the_line_scores_normal(browser, live) -> None:
    from playwright.sync_api import expect

    server, _ = live
    w = Watched(browser, server.url, DESKTOP)
    page = w.login("/anomalies")
    expect(page.locator("h1")).to_have_text("Triage queue")
    assert page.locator("section.incident").count() >= 2 and page.locator("article.grow").count() >= 4
    total = _total(page)
    nav_before = int(page.locator("#nav-count").inner_text())
    assert total == nav_before > 0
    w.fits("queue")
    w.shot("queue.png", full_page=False)

    page = w.go("/?range=1h")
    expect(page.locator(".stream-card")).to_have_count(2)
    expect(page.locator(".stream-card", has_text="hdfs-prod")).to_contain_text("LogGPT v1")
    assert page.locator(".stream-card svg rect.bar-lines").count() >= 1
    assert page.locator(".stream-card svg rect.bar-anomalies").count() >= 1
    w.fits("overview")
    w.shot("overview.png")

    page = w.go("/anomalies")
    row = page.locator("article.grow", has_text="lease recovery stalled")
    expect(row).to_have_count(1)
    ids = row.get_attribute("data-ids")
    row.get_by_role("link", name="Details").click()
    page.wait_for_url(re.compile(r".*/anomalies/\d+$"))
    expect(page.locator("#raw-line")).to_contain_text("lease recovery stalled for client DFSClient_77")
    expect(page.locator(".reasons")).to_contain_text("Far from every known normal line")
    expect(page.locator(".reasons")).to_contain_text("Sequence miss")
    expect(page.locator("code.nearest")).to_have_count(1)  # RAPID's nearest normal line
    assert page.locator("#masked-line mark").count() >= 1  # worst-matched tokens highlighted
    assert page.locator("ol.seq li.miss").count() >= 1  # LogGPT's miss marked in the window
    assert page.locator("ol.seq li.miss .expected .key").count() >= 1  # with the top-K it expected
    assert page.locator("ol.around li").count() >= 5  # the lines around it
    w.fits("detail")
    w.shot("detail.png")

    page.locator("#actions").get_by_role("button", name="Mark normal", exact=True).click()
    expect(page.locator("#anomaly-status")).to_have_text("refuted")  # updated in place
    expect(page.locator("#actions .resolved-note")).to_contain_text("Marked normal")
    expect(page.locator("#nav-count")).not_to_have_text(str(nav_before))

    page.locator("nav[aria-label=main]").get_by_role("link", name=re.compile("Queue")).click()
    page.wait_for_url(server.url + "/anomalies")
    expect(page.locator(f'article.grow[data-ids="{ids}"]')).to_have_count(0)  # the row left the queue
    expect(page.locator("article.grow", has_text="lease recovery stalled")).to_have_count(0)
    assert _total(page) < total

    with server.api() as api:  # the model learned it: the same line scores normal now
        again = post(api, "hdfs-prod", [ODD_LEASE])[0]
    assert again["severity"] == "normal" and again["rapid_flag"] is False and again["rapid_score"] == 0.0
    w.close()


def test_row_button_bulk_action_and_retrain(browser, live) -> None:
    from playwright.sync_api import expect

    server, _ = live
    w = Watched(browser, server.url, DESKTOP)
    page = w.login("/anomalies?stream=payments")
    rows = page.locator("article.grow")
    expect(rows).to_have_count(2)
    total = _total(page)
    first = rows.first
    n = len(first.get_attribute("data-ids").split(","))
    first.get_by_role("button", name="Mark normal", exact=True).click()
    expect(first).to_have_attribute("data-status", "refuted")  # the row updates in place ...
    expect(first.locator(".resolved-note")).to_contain_text("Marked normal")
    expect(page.locator("#queue-total")).to_have_text(str(total - n))  # ... and the queue count changes

    page.locator("select[name=severity]").select_option("watch")  # a filter: the queue redraws, URL follows
    page.wait_for_url(re.compile(r".*severity=watch.*"))
    expect(page.locator("article.grow")).to_have_count(1)
    page.locator("input[data-select-all]").check()
    page.locator("#bulk").get_by_role("button", name="Confirm anomaly").click()
    expect(page.locator("#flash")).to_contain_text("Confirmed as anomaly")
    expect(page.locator("#queue .empty")).to_contain_text("Nothing here")

    # live refresh: a new anomaly arrives; a notice offers it without moving the page under the operator
    page.locator("select[name=severity]").select_option("")
    expect(page.locator("#queue .empty")).to_contain_text("Nothing here")
    with server.api() as api:
        post(api, "payments", ["2024-05-01T10:05:00Z ERROR card vault unreachable: connection refused"])
    notice = page.locator("#queue-notice a")
    expect(notice).to_have_text("1 new anomaly: show", timeout=15_000)
    expect(page.locator("article.grow")).to_have_count(0)  # nothing moved by itself
    notice.click()
    expect(page.locator("article.grow", has_text="card vault unreachable")).to_have_count(1)

    page = w.go("/streams")
    card = page.locator(".stream-row", has_text="hdfs-prod")
    card.get_by_role("button", name="Retrain now").click()
    bar = card.locator(".job-progress")
    expect(bar.locator("progress")).to_have_count(1)
    expect(bar).to_have_attribute("data-state", "done", timeout=90_000)  # it polled itself to the end
    expect(bar).to_contain_text("version 2 promoted")
    page = w.go("/models?stream=hdfs-prod")
    expect(page.locator("tr.live")).to_contain_text("v2")
    expect(page.get_by_role("button", name="Roll back")).to_have_count(1)
    page = w.go("/jobs")
    expect(page.locator("table.jobs tbody tr")).to_have_count(2)
    w.fits("jobs")
    w.close()


def test_pages_on_a_phone(browser, live) -> None:
    from playwright.sync_api import expect

    server, _ = live
    w = Watched(browser, server.url, PHONE)
    page = w.login("/")
    expect(page.locator(".stream-card")).to_have_count(2)
    w.fits("overview on a phone")
    w.shot("phone-overview.png")
    page = w.go("/anomalies?status=any")
    assert page.locator("article.grow").count() >= 1
    w.fits("queue on a phone")
    w.shot("phone-queue.png", full_page=False)
    detail = page.locator("article.grow a:has-text('Details')").first.get_attribute("href")
    page = w.go(detail)
    button = page.locator("#actions").get_by_role("button", name="Mark normal", exact=True)
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]  # reachable
    w.fits("detail on a phone")
    w.shot("phone-detail.png")
    for path in ("/streams", "/streams/hdfs-prod", "/models", "/jobs"):
        w.go(path)
        w.fits(f"{path} on a phone")
    w.close()


def test_search_by_words_and_time_opens_the_line_in_context_and_the_tail_follows(browser, live) -> None:
    from playwright.sync_api import expect

    server, _ = live
    w = Watched(browser, server.url, DESKTOP)
    page = w.login("/search")
    page.fill("input[name=q]", "gateway timeout")
    page.click("details.precise summary")
    page.fill("input[name=since]", "2024-05-01T09:00")
    page.fill("input[name=until]", "2024-05-01T11:00")
    page.click("button:has-text('Search')")
    hits = page.locator("table.search-hits tbody tr")
    expect(hits.first.locator("mark").first).to_have_text("gateway")
    assert hits.count() >= 2 and all("gateway" in t for t in hits.all_inner_texts())
    assert "q=gateway%20timeout" in page.url and "since=2024-05-01T09" in page.url  # in the URL: it can be shared
    hits.first.locator("a.hit").click()
    page.wait_for_url(re.compile(r"/lines/\d+$"))
    expect(page.locator("tr#at")).to_contain_text("gateway timeout")
    assert page.locator("table.context-lines tbody tr").count() >= 3  # the payments stream's lines around it
    w.shot("search-context.png")

    page = w.go("/streams/payments/tail")
    expect(page.locator("#tail-rows tr").first).to_be_visible()
    with server.api() as api:
        post(api, "payments", ["2024-05-01T10:05:00Z WARN retry queue length 977 above soft limit"])
    expect(page.locator("#tail-rows tr").first).to_contain_text("977", timeout=10_000)
    page.click("[data-tail-toggle]")
    expect(page.locator("[data-tail-state]")).to_have_text("paused")
    w.close()
