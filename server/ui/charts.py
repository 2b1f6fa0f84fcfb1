"""Server-rendered SVG charts (no JavaScript, no outside requests): lines (from line_counts) and
anomalies over time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from sqlalchemy.engine import Engine
from sqlmodel import Session

from logsense.server import reports

RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400}
BUCKETS = 60
WIDTH, HEIGHT = 600, 130
TOP_H, BOTTOM_H = 82, 26  # lines bars above, anomaly bars below
LEFT, RIGHT = 4, 4


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    title: str
    href: str = ""  # the bar's time span: its lines in search, its anomalies in the queue


@dataclass
class Chart:
    """What `overview/chart.svg` draws for one stream."""

    range_name: str
    start: datetime
    end: datetime
    line_bars: list[Bar]
    anomaly_bars: list[Bar]
    max_lines: int
    max_anomalies: int
    total_lines: int
    total_anomalies: int
    ticks: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT
    top_h: int = TOP_H
    bottom_y: int = TOP_H + 16
    bottom_h: int = BOTTOM_H


def stream_chart(engine: Engine, stream_id: int, range_name: str, now: datetime | None = None,
                 stream_name: str | None = None) -> Chart:
    """The stream's lines and anomalies per bucket over the range; with `stream_name`, each bar
    links to its span: lines to the search page, anomalies to the queue (any status)."""
    seconds = RANGES[range_name]
    width = seconds // BUCKETS
    now = now or datetime.now(timezone.utc)
    end_epoch = (int(now.timestamp()) // width + 1) * width  # the current bucket is the last one
    start = datetime.fromtimestamp(end_epoch - width * BUCKETS, timezone.utc)
    with Session(engine) as db:
        lines = reports.line_buckets(db, stream_id, start, width)
        anomalies = reports.anomaly_buckets(db, stream_id, start, width)
    max_lines, max_anoms = max(lines.values(), default=0), max(anomalies.values(), default=0)
    step = (WIDTH - LEFT - RIGHT) / BUCKETS
    fmt = "%H:%M" if seconds <= 86400 else "%m-%d %H:%M"
    line_bars, anomaly_bars = [], []
    for i in range(BUCKETS):
        t0 = start + timedelta(seconds=i * width)
        t1 = t0 + timedelta(seconds=width)
        label = f"{t0:{fmt}}–{t1:%H:%M} UTC"
        span = urlencode({"stream": stream_name or "", "since": t0.isoformat(), "until": t1.isoformat()})
        x = LEFT + i * step
        n = lines.get(i, 0)
        if n:
            h = max(1.5, TOP_H * n / max_lines)
            line_bars.append(Bar(round(x + 0.5, 2), round(TOP_H - h, 2), round(step - 1, 2), round(h, 2),
                                 f"{label}: {n} lines", f"/search?{span}" if stream_name else ""))
        a = anomalies.get(i, 0)
        if a:
            h = max(3.0, BOTTOM_H * a / max_anoms)
            anomaly_bars.append(Bar(round(x + 0.5, 2), round(TOP_H + 16 + BOTTOM_H - h, 2), round(step - 1, 2),
                                    round(h, 2), f"{label}: {a} anomalies",
                                    f"/anomalies?status=any&{span}" if stream_name else ""))
    ticks = []
    for i in (0, BUCKETS // 2, BUCKETS):
        t = start + timedelta(seconds=i * width)
        ticks.append((round(LEFT + i * step, 2), f"{t:{fmt}}"))
    return Chart(range_name, start, now, line_bars, anomaly_bars, max_lines, max_anoms,
                 sum(lines.values()), sum(anomalies.values()), ticks)
