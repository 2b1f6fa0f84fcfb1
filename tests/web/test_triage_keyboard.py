"""Triage at volume in a real browser (Debian's Chromium, headless, Playwright; a real server as in
test_browser.py): keyboard-only triage with the focus on the next row after each answer, a row
of 1,000 anomalies answered from the queue behind a confirmation and undone, dark mode by the
browser's preference.

With LOGSENSE_SCREENSHOTS=1 the queue, an anomaly's page, an incident and a search, light and dark (1280x800 PNG), go to
docs/screenshots/ for the README.
"""

from __future__ import annotations

import io
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlmodel import Session, select

from logsense.server import store
from logsense.server.tables import Anomaly, LogLine, Stream

from .live import PASSWORD, USERNAME
from .test_browser import DESKTOP, Watched, browser, live  # noqa: F401 (fixtures: one server for this module)

SCREENSHOTS = os.environ.get("LOGSENSE_SCREENSHOTS") == "1"  # read at import: the tests clear LOGSENSE_* variables
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
MAX_SHOT_BYTES = 200_000
TIMEZONE = "Asia/Kolkata"  # the browser's zone in these tests: UTC+05:30 all year


def _stream(server, name: str) -> int:  # noqa: ANN001
    with server.api() as api:
        r = api.post("/api/v1/streams", json={"name": name, "settings": {"format": "hdfs", "train_mode": False}})
        assert r.status_code == 201, r.text
    with Session(server.app.state.engine) as s:
        return s.exec(select(Stream).where(Stream.name == name)).one().id


def _anomalies(server, stream_id: int, template_id: int, raws: list[str], start: datetime,  # noqa: ANN001
               step: float = 0.1, severity: str = "watch") -> list[int]:
    """Lines RAPID flagged and their open anomalies, stored as ingest stores them (one transaction)."""
    n = len(raws)
    with store.write_session(server.app.state.engine) as s:
        line_ids = store.insert_lines(s, stream_id, start, {
            "raw": raws, "masked": [re.sub(r"\d+", "<NUM>", r) for r in raws], "template_id": [template_id] * n,
            "sessions": [[]] * n, "severity": [severity] * n, "rapid_score": [0.7] * n, "rapid_flag": [True] * n})
        rows = [{"stream_id": stream_id, "line_id": lid, "window_id": None, "template_id": template_id, "kind": "line",
                 "severity": severity, "status": "open", "reasons": {"rapid_score": 0.7, "rapid_threshold": 0.2},
                 "created_at": start + timedelta(seconds=step * i), "updated_at": start + timedelta(seconds=step * i)}
                for i, lid in enumerate(line_ids)]
        store.insert_anomalies(s, rows)
    with Session(server.app.state.engine) as s:
        return list(s.exec(select(Anomaly.id).where(Anomaly.line_id.in_(line_ids)).order_by(Anomaly.id)).all())


def _keyboard_login(w: Watched, path: str):  # noqa: ANN202
    page = w.go(path)
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.press("input[name=password]", "Enter")  # no click
    page.wait_for_url(w.base + path)
    return page


def _active_id(page) -> str:  # noqa: ANN001
    return page.evaluate("document.activeElement ? document.activeElement.id : ''")


def _wait_focus(page, element_id: str) -> None:  # noqa: ANN001
    page.wait_for_function("id => document.activeElement && document.activeElement.id === id", arg=element_id,
                           timeout=20_000)


def _shot(page, name: str) -> None:  # noqa: ANN001
    """A 1280x800 PNG in docs/screenshots/, its colours reduced when it would pass ~200 KB."""
    if not SCREENSHOTS:
        return
    SHOTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(full_page=False, type="png")
    if len(data) > MAX_SHOT_BYTES:
        from PIL import Image

        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        image.save(out, format="PNG", optimize=True)
        data = out.getvalue()
    (SHOTS / name).write_bytes(data)


class _Scheme:
    """The browser, its new contexts asking for a colour scheme (prefers-color-scheme)."""

    def __init__(self, browser, scheme: str) -> None:  # noqa: ANN001
        self.browser, self.scheme = browser, scheme

    def new_context(self, **kw):  # noqa: ANN003, ANN201
        return self.browser.new_context(color_scheme=self.scheme, timezone_id=TIMEZONE, **kw)


def _rgb(css: str) -> tuple[float, ...]:
    return tuple(float(x) for x in re.findall(r"[\d.]+", css)[:3])


def _contrast(a: str, b: str) -> float:
    def lum(rgb: tuple[float, ...]) -> float:
        c = [v / 255 for v in rgb]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(_rgb(a)), lum(_rgb(b))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_dark_mode_follows_the_browser_and_stays_readable(browser, live) -> None:  # noqa: F811
    from playwright.sync_api import expect

    server, _ = live
    colours = {}
    for scheme in ("light", "dark"):
        w = Watched(_Scheme(browser, scheme), server.url, DESKTOP)
        page = w.login("/anomalies")
        expect(page.locator("article.grow").first).to_be_visible()
        when = page.locator("article.grow .g-seen time").first  # shown in the browser's zone, UTC in the title
        utc = datetime.fromisoformat(when.get_attribute("datetime"))
        assert when.get_attribute("title") == utc.strftime("%Y-%m-%d %H:%M:%S UTC")
        local = (utc + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S")
        expect(when).to_have_text(re.compile(re.escape(local) + r" (GMT\+5:30|IST)$"))
        assert page.locator("details.range [data-tz-name]").first.text_content() in ("GMT+5:30", "IST")
        assert page.locator("input[data-tz]").input_value() == "-330"
        colours[scheme] = page.evaluate("""() => {
            const css = (el, p) => getComputedStyle(el)[p];
            const card = document.querySelector('article.grow');
            const code = document.querySelector('.g-template code');
            const muted = document.querySelector('.g-seen');
            return {bg: css(document.body, 'backgroundColor'), ink: css(document.body, 'color'),
                    card: css(card.closest('.incident'), 'backgroundColor'), code: css(code, 'color'),
                    muted: css(muted, 'color'), scheme: css(document.documentElement, 'colorScheme')};
        }""")
        _shot(page, f"queue-{scheme}.png")
        page.locator("article.grow", has_text="lease recovery stalled").get_by_role("link", name="Details").focus()
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r".*/anomalies/\d+$"))
        expect(page.locator(".reasons")).to_contain_text("Far from every known normal line")
        colours[scheme]["kv"] = page.evaluate("getComputedStyle(document.querySelector('code.line')).backgroundColor")
        rapid = page.locator("section[aria-label=RAPID]")
        expect(rapid.locator("#worst-words .tok").first).to_be_visible()  # whole words, not wordpieces
        assert "##" not in rapid.inner_text() and "##" not in page.locator("#masked-line").inner_text()
        _shot(page, f"detail-{scheme}.png")
        page = w.go("/incidents")
        page.locator("a[href^='/incidents/']").first.click()
        page.wait_for_url(re.compile(r".*/incidents/\d+$"))
        _shot(page, f"incident-{scheme}.png")
        page = w.go("/search?q=gateway+timeout")
        expect(page.locator("table.search-hits mark").first).to_be_visible()
        _shot(page, f"search-{scheme}.png")
        w.close()
    light, dark = colours["light"], colours["dark"]
    assert light["bg"] != dark["bg"] and light["card"] != dark["card"] and light["kv"] != dark["kv"], colours
    assert sum(_rgb(dark["bg"])) < sum(_rgb(light["bg"])) and "dark" in dark["scheme"]
    for name, c in colours.items():  # readable: WCAG AA for body text on the page and on a card
        assert _contrast(c["ink"], c["bg"]) >= 7, (name, c)
        assert _contrast(c["code"], c["card"]) >= 4.5 and _contrast(c["muted"], c["card"]) >= 4.5, (name, c)
    if SCREENSHOTS:
        for name in [f"{page}-{scheme}.png" for page in ("queue", "detail", "incident", "search")
                     for scheme in ("light", "dark")]:
            size = (SHOTS / name).stat().st_size
            print(f"docs/screenshots/{name}: {size / 1000:.0f} KB")
            assert size <= MAX_SHOT_BYTES * 1.1, (name, size)


def test_keyboard_only_triage_keeps_the_focus_on_the_next_row(browser, live) -> None:  # noqa: F811
    from playwright.sync_api import expect

    server, _ = live
    sid = _stream(server, "keys")
    start = datetime.now(timezone.utc) - timedelta(minutes=3)
    for i, words in enumerate(("disk quota low on %d", "fan speed high %d", "lease expired for %d", "cache miss storm %d")):
        _anomalies(server, sid, 101 + i, [f"081110 1010 1 WARN {words % n}" for n in (1, 2)], start + timedelta(seconds=10 * i))
    w = Watched(browser, server.url, DESKTOP)
    page = _keyboard_login(w, "/anomalies?stream=keys")
    rows = page.locator("#queue article.grow")
    expect(rows).to_have_count(4)
    ids = [rows.nth(i).get_attribute("id") for i in range(4)]

    page.keyboard.press("Tab")  # the skip link is the first stop ...
    assert page.evaluate("document.activeElement.textContent") == "Skip to the queue"
    page.keyboard.press("Enter")  # ... and lands on the first row
    _wait_focus(page, ids[0])
    assert "current" in rows.nth(0).get_attribute("class")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # a visible focus
    page.keyboard.press("j")
    _wait_focus(page, ids[1])
    page.keyboard.press("ArrowDown")
    _wait_focus(page, ids[2])
    page.keyboard.press("k")
    page.keyboard.press("ArrowUp")
    _wait_focus(page, ids[0])

    page.keyboard.press("n")  # mark normal: the row closes in place, the next row has the focus
    expect(page.locator(f"#{ids[0]}")).to_have_attribute("data-status", "refuted")
    _wait_focus(page, ids[1])
    page.keyboard.press("c")  # confirm
    expect(page.locator(f"#{ids[1]}")).to_have_attribute("data-status", "confirmed")
    _wait_focus(page, ids[2])
    page.keyboard.press("m")  # mute the template for an hour
    expect(page.locator(f"#{ids[2]}")).to_have_attribute("data-status", "muted")
    _wait_focus(page, ids[3])
    assert _active_id(page) != ""  # never <body>

    page.keyboard.press("u")  # undo the last answer (the confirmation): that row is open again and focused
    expect(page.locator(f"#{ids[1]}")).to_have_attribute("data-status", "open")
    expect(page.locator(f"#{ids[1]} .resolved-note")).to_contain_text("the model keeps what it learned")
    _wait_focus(page, ids[1])
    with Session(server.app.state.engine) as s:
        statuses = [s.get(Anomaly, int(i)).status for i in (rows.nth(j).get_attribute("data-ids").split(",")[0]
                                                             for j in range(4))]
    assert statuses == ["refuted", "open", "muted", "open"]

    page.keyboard.press("?")  # the list of keys
    expect(page.locator("#shortcuts")).to_be_visible()
    expect(page.locator("#shortcuts")).to_contain_text("mark normal")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts")).to_be_hidden()

    stops = 0  # the time presets are one Tab stop, the precise fields hidden behind "Exact range…"
    page.focus("#f-status")
    while "seg" not in (page.evaluate("document.activeElement.parentElement.parentElement.className") or ""):
        page.keyboard.press("Tab")
        stops += 1
        assert stops < 3, "the time presets should follow the status filter"
    page.keyboard.press("ArrowRight")  # "any time" -> "15 min"
    page.keyboard.press("ArrowRight")  # -> "1 h": the queue redraws, the URL follows
    page.wait_for_url(re.compile(r".*last=1h.*"))
    expect(page.locator("#queue .totals")).to_contain_text("raised in the last 1 h")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"  # not seven stops of a date field
    w.close()


def test_a_row_of_1000_anomalies_is_answered_after_a_confirmation_and_undone(browser, live) -> None:  # noqa: F811
    from playwright.sync_api import expect

    server, _ = live
    sid = _stream(server, "flood")
    start = datetime.now(timezone.utc) - timedelta(minutes=5)
    raws = [f"081110 1010 7 WARN dfs.DataNode: slow block receiver {i} took {i % 97} ms" for i in range(1000)]
    t0 = time.perf_counter()
    ids = _anomalies(server, sid, 201, raws, start)
    print(f"\n1,000 anomalies stored in {time.perf_counter() - t0:.2f} s")
    assert len(ids) == 1000

    w = Watched(browser, server.url, DESKTOP)
    page = w.login("/anomalies?stream=flood")
    row = page.locator("#queue article.grow")
    expect(row).to_have_count(1)
    expect(row.locator(".n")).to_have_text("×1000")
    expect(page.locator("#queue-total")).to_have_text("1000")

    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    row.get_by_role("button", name="Mark normal", exact=True).click()
    expect(row).to_have_attribute("data-status", "open")  # dismissed: nothing happened
    assert asked and "all 1000 anomalies" in asked[0] and "Undo" in asked[0]
    page.wait_for_timeout(300)
    with Session(server.app.state.engine) as s:
        assert s.exec(select(Anomaly).where(Anomaly.id.in_(ids), Anomaly.status != "open")).first() is None

    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    started = time.perf_counter()
    row.get_by_role("button", name="Mark normal", exact=True).click()
    expect(row).to_have_attribute("data-status", "refuted", timeout=120_000)
    took = time.perf_counter() - started
    print(f"'Mark normal' on a row of 1,000 anomalies: {took:.2f} s from the click (confirmation accepted) to the row redrawn")
    expect(row.locator(".resolved-note")).to_contain_text("Marked normal: 1000 anomalies.")
    expect(page.locator("#queue-total")).to_have_text("0")  # the queue updated
    with Session(server.app.state.engine) as s:
        assert s.exec(select(Anomaly).where(Anomaly.id.in_(ids), Anomaly.status != "refuted")).first() is None
        labels = set(s.exec(select(LogLine.label).join(Anomaly, Anomaly.line_id == LogLine.id)
                            .where(Anomaly.id.in_(ids))).all())
    assert labels == {"normal"}
    with server.api() as api:  # the model learned the lines: the same line scores normal now
        again = api.post("/api/v1/streams/flood/logs", json={"lines": [raws[5]]}).json()["lines"][0]
    assert again["severity"] == "normal"

    started = time.perf_counter()
    row.get_by_role("button", name="Undo").click()
    expect(row).to_have_attribute("data-status", "open", timeout=60_000)
    print(f"Undo (reopen) of the 1,000: {time.perf_counter() - started:.2f} s")
    expect(row.locator(".resolved-note")).to_contain_text("Reopened: 1000 anomalies; the model keeps what it learned.")
    expect(page.locator("#queue-total")).to_have_text("1000")
    with Session(server.app.state.engine) as s:
        assert s.exec(select(Anomaly).where(Anomaly.id.in_(ids), Anomaly.status != "open")).first() is None
        assert set(s.exec(select(LogLine.label).join(Anomaly, Anomaly.line_id == LogLine.id)
                          .where(Anomaly.id.in_(ids))).all()) == {None}
    w.close()
