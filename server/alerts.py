"""Alerts out: notification channels, the durable outbox, and the dispatcher that sends it.

Channels (`alert_channels`, managed through `/api/v1/alerts/channels` and the `/alerts` page) are
a generic webhook (JSON, signed: `X-LogSense-Signature: sha256=<hex HMAC-SHA256 of the body with
the channel's secret>`), a Slack incoming webhook (a short text), an Alertmanager (`POST
{url}/api/v2/alerts`), or email (`smtp://[user:password@]host[:port]?from=..&to=..`, `smtps://`
for TLS from the start, `&starttls=true` to upgrade; `smtp_target` reads it). Each has rules: the
streams it wants (None: all), the least severity (watch or danger), `only_new_incidents` (only an
anomaly that opens an incident: its stream had no open anomaly in the `incident_gap_seconds`
before it; one alert per new incident, its most severe template) and `digest_seconds` (None: each
alert at once; else held and sent as one message per interval).

Enqueue, in the transaction of the event (`alert_outbox`, unique per channel, anomaly and event):
- `firing`: `store.insert_anomalies` hands the new anomalies that are still `open` after
  `store.route_anomalies` (not muted, not joined to a confirmed incident) to `AlertHook.fired`
  (registered per engine in `store.ANOMALY_HOOKS` while an app runs). One alert per stream,
  template and severity of a batch (`count` says how many anomalies it stands for), and none
  while the channel has one firing for an open anomaly of that template and severity newer than
  `incident_gap_seconds`. The enabled channels are read once per `CACHE_SECONDS` (nothing more
  is done while there are none).
- `resolved`: feedback (`server.feedback`: refute, confirm, mute) calls `resolve_closed` with
  the time it stamped on the anomalies it closed: every firing alert of those gets its resolve
  (Alertmanager: the same alert with `endsAt`).
- A digest channel's rows (either event) are due at the end of its open window: the
  `next_attempt_at` of its rows queued and not yet tried, else `digest_seconds` from now. The
  digest lives in the outbox rows themselves, so it survives a restart.

Delivery (`Dispatcher`, a thread started with the app): per channel, the oldest undelivered row
first and one at a time (a resolve never overtakes its firing alert); a digest channel's due rows
(up to `DIGEST_MAX`) go together as one message, in id order, and are marked together. A row is
claimed before it is sent (`sending`, `next_attempt_at` = the claim's expiry: a claim a crashed
process left is taken again after `CLAIM_SECONDS`), marked `sent` only after a 2xx (email: the
server took the message), else retried with exponential backoff (`BACKOFF_BASE` doubling up to
`BACKOFF_CAP`) and `failed` after `MAX_ATTEMPTS`. Rows survive a restart; a crash between the
receiver's 2xx and the `sent` mark sends that row again (at least once: webhooks carry
`X-LogSense-Delivery`, the row ids, to dedupe).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from sqlalchemy import event as sa_event
from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from logsense.models.settings import StreamSettings
from logsense.server import store
from logsense.server.links import context_link
from logsense.server.loop import Loop
from logsense.server.services import Services
from logsense.server.tables import AlertChannel, AlertOutbox, Anomaly, LogLine, Stream, utcnow

log = logging.getLogger("logsense.alerts")

SEVERITY_RANK = {"watch": 1, "danger": 2}
SIGNATURE_HEADER = "X-LogSense-Signature"
DELIVERY_HEADER = "X-LogSense-Delivery"
EVENT_HEADER = "X-LogSense-Event"
ALERTNAME = "LogSenseAnomaly"

CACHE_SECONDS = 5.0  # how long the enabled channels are read from cache by the enqueue hook
HTTP_TIMEOUT = 10.0  # seconds per delivery request
MAX_ATTEMPTS = 10  # then the row is `failed`
BACKOFF_BASE = 1.0  # seconds before the second attempt; doubles per attempt
BACKOFF_CAP = 300.0
CLAIM_SECONDS = 60.0  # a claim (state `sending`) older than this is taken again (its process died)
POLL_SECONDS = 0.5
SENDERS = 4  # channels sent to at once (one row in flight per channel)
EXAMPLE_CHARS = 1000
DIGEST_MAX = 50  # alerts in one digest message (a Slack text stays well under its limit); more go in the next
SUBJECT_CHARS = 120


def severity_rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", 0)


def signature(secret: str, body: bytes) -> str:
    """The `X-LogSense-Signature` value of a webhook body: `sha256=` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def anomaly_link(public_url: str, anomaly_id: int | None) -> str:
    base = public_url.rstrip("/")
    return f"{base}/anomalies/{anomaly_id}" if anomaly_id is not None else f"{base}/anomalies"


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- rules and enqueue


@dataclass(frozen=True)
class Rule:
    """An enabled channel's rules, as the enqueue hook needs them."""

    id: int
    streams: frozenset[str] | None
    min_rank: int
    only_new: bool = False
    digest: int | None = None  # seconds

    def matches(self, stream: str | None, severity: str) -> bool:
        return (self.streams is None or stream in self.streams) and severity_rank(severity) >= self.min_rank


class AlertHook:
    """One app's enqueue side: `store.ANOMALY_HOOKS[engine]` while the app runs."""

    def __init__(self, services: Services):
        self.services = services
        self._rules: list[Rule] = []
        self._read_at = float("-inf")
        self._lock = threading.Lock()
        self.dispatcher: Dispatcher | None = None

    def invalidate(self) -> None:
        """Channels changed: read them again at the next batch."""
        with self._lock:
            self._read_at = float("-inf")

    def rules(self, session: Session) -> list[Rule]:
        """The enabled channels' rules: one query per `CACHE_SECONDS`."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < CACHE_SECONDS:
                return self._rules
        c = AlertChannel
        rows = session.execute(select(c.id, c.streams, c.min_severity, c.only_new_incidents, c.digest_seconds)
                               .where(c.enabled == True)).all()  # noqa: E712
        rules = [Rule(cid, frozenset(streams) if streams is not None else None, severity_rank(sev), bool(only_new),
                      digest or None)
                 for cid, streams, sev, only_new, digest in rows]
        with self._lock:
            self._rules, self._read_at = rules, now
        return rules

    def wants(self, session: Session, rows: list[dict]) -> list[Rule]:
        """The rules worth looking at for these new anomalies ([] when none is open or no channel is enabled)."""
        if not any(r.get("status", "open") == "open" for r in rows):
            return []
        return self.rules(session)

    def fired(self, session: Session, rows: list[dict], ids: list[int], rules: list[Rule]) -> int:
        """Queue `firing` alerts for the open ones of these just-inserted anomalies (`ids` in
        order); the number of outbox rows written."""
        groups: dict[tuple, list[tuple[dict, int]]] = {}
        for row, aid in zip(rows, ids):
            if row.get("status", "open") == "open":
                groups.setdefault((row["stream_id"], row.get("template_id"), row["severity"]), []).append((row, aid))
        if not groups:
            return 0
        stream_ids = {k[0] for k in groups}
        names = dict(session.execute(select(Stream.id, Stream.name).where(Stream.id.in_(stream_ids))).all())
        wanted = [(rule, key) for key in groups for rule in rules if rule.matches(names.get(key[0]), key[2])]
        if not wanted:
            return 0
        newest = max(max(r.get("created_at") or utcnow() for r, _ in members) for members in groups.values())
        gap = float(getattr(self.services.settings, "incident_gap_seconds", 300.0))
        firing = _still_firing(session, stream_ids, {k[1] for k in groups if k[1] is not None},
                               newest - timedelta(seconds=gap))
        wanted = [(rule, key) for rule, key in wanted if (rule.id, key[0], key[1], key[2]) not in firing]
        if any(rule.only_new for rule, _ in wanted):
            wanted = _openers(session, wanted, groups, gap)
        if not wanted:
            return 0
        first = {key: groups[key][0] for _, key in wanted}
        line_ids = [row["line_id"] for row, _ in first.values() if row.get("line_id") is not None]
        raws, stamps = {}, {}
        if line_ids:
            for lid, raw, ts in session.execute(select(LogLine.id, LogLine.raw, LogLine.timestamp)
                                                .where(LogLine.id.in_(line_ids))).all():
                raws[lid], stamps[lid] = raw, ts
        context_urls = {sid: StreamSettings.read_stored(settings or {})[0].context_url for sid, settings in
                        session.execute(select(Stream.id, Stream.settings).where(Stream.id.in_(stream_ids))).all()}
        registry = self.services.registry
        public_url = self.services.settings.public_url
        alerts = {}
        for key, (row, aid) in first.items():
            model = registry.peek(key[0]) if registry is not None else None
            raw = raws.get(row.get("line_id"))
            alerts[key] = {
                "event": "firing", "anomaly_id": aid, "stream": names.get(key[0]), "kind": row.get("kind", "line"),
                "severity": key[2], "status": "open", "template_id": key[1],
                "template": model.template(key[1]) if model is not None and key[1] is not None else None,
                "example": raw[:EXAMPLE_CHARS] if raw is not None else None, "count": len(groups[key]),
                "created_at": _iso(row.get("created_at") or utcnow()), "resolved_at": None,
                "link": anomaly_link(public_url, aid),
                "context_link": context_link(context_urls.get(key[0]), names.get(key[0]) or "",
                                             _when(stamps.get(row.get("line_id")), row.get("created_at")), key[1]),
            }
        now = utcnow()
        due = due_times(session, {rule.id: rule.digest for rule, _ in wanted if rule.digest}, now)
        out = [{"channel_id": rule.id, "anomaly_id": first[key][1], "event": "firing", "payload": alerts[key],
                "state": "pending", "attempts": 0, "next_attempt_at": due.get(rule.id, now), "created_at": now}
               for rule, key in wanted]
        session.execute(insert(AlertOutbox.__table__), out)
        _wake_after_commit(session, self.dispatcher)
        return len(out)


def _openers(session: Session, wanted: list[tuple[Rule, tuple]], groups: dict[tuple, list], gap: float
             ) -> list[tuple[Rule, tuple]]:
    """`wanted` with only-new-incident rules cut to one alert per stream whose new anomalies open
    an incident (no open anomaly of the stream in the `gap` before the batch's first), the most
    severe template first: a template joining an incident already on does not page again."""
    firsts: dict[int, datetime] = {}
    for key, members in groups.items():
        when = min(row.get("created_at") or utcnow() for row, _ in members)
        firsts[key[0]] = min(firsts.get(key[0], when), when)
    ongoing = {sid for sid, first in firsts.items() if session.execute(
        select(Anomaly.id).where(Anomaly.stream_id == sid, Anomaly.status == "open",
                                 Anomaly.created_at >= first - timedelta(seconds=gap), Anomaly.created_at < first)
        .limit(1)).first() is not None}
    order = sorted(wanted, key=lambda w: (-severity_rank(w[1][2]), firsts[w[1][0]], w[1][1] is None, w[1][1] or 0))
    keep, paged = [], set()
    for rule, key in order:
        if not rule.only_new:
            keep.append((rule, key))
        elif key[0] not in ongoing and (rule.id, key[0]) not in paged:
            paged.add((rule.id, key[0]))
            keep.append((rule, key))
    return keep


def due_times(session: Session, digests: dict[int, int], now: datetime) -> dict[int, datetime]:
    """When new rows of these digest channels (id: seconds) are due: the end of the channel's open
    window (rows queued and not tried yet), else a new window from `now`."""
    if not digests:
        return {}
    o = AlertOutbox
    open_ends = dict(session.execute(
        select(o.channel_id, func.min(o.next_attempt_at))
        .where(o.state == "pending", o.channel_id.in_(digests), o.attempts == 0, o.next_attempt_at > now)
        .group_by(o.channel_id)).all())
    return {cid: open_ends.get(cid) or now + timedelta(seconds=seconds) for cid, seconds in digests.items()}


def _still_firing(session: Session, stream_ids: set[int], template_ids: set[int], since: datetime) -> set[tuple]:
    """(channel id, stream id, template id, severity) of alerts firing now: a firing row for an
    anomaly still open, created since `since`."""
    if not template_ids:
        return set()
    rows = session.execute(
        select(AlertOutbox.channel_id, Anomaly.stream_id, Anomaly.template_id, Anomaly.severity)
        .join(Anomaly, Anomaly.id == AlertOutbox.anomaly_id)
        .where(Anomaly.stream_id.in_(stream_ids), Anomaly.status == "open", Anomaly.created_at >= since,
               Anomaly.template_id.in_(template_ids), AlertOutbox.event == "firing")
        .distinct()
    ).all()
    return {tuple(r) for r in rows}


def resolve_closed(session: Session, stream_id: int, since: datetime) -> int:
    """Queue `resolved` alerts for the stream's anomalies closed (refuted, confirmed, muted) at or
    after `since` that had a firing alert; call it in the transaction that closed them, with the
    time it stamped as their `updated_at`. The number of outbox rows written."""
    resolved = aliased(AlertOutbox)
    rows = session.execute(
        select(AlertOutbox.channel_id, AlertOutbox.anomaly_id, AlertOutbox.payload, Anomaly.status,
               AlertChannel.digest_seconds)
        .join(Anomaly, Anomaly.id == AlertOutbox.anomaly_id)
        .join(AlertChannel, AlertChannel.id == AlertOutbox.channel_id)
        .where(AlertOutbox.event == "firing", Anomaly.stream_id == stream_id, Anomaly.status != "open",
               Anomaly.updated_at >= since,
               ~exists().where(resolved.channel_id == AlertOutbox.channel_id,
                               resolved.anomaly_id == AlertOutbox.anomaly_id, resolved.event == "resolved"))
    ).all()
    if not rows:
        return 0
    now = utcnow()
    due = due_times(session, {cid: digest for cid, _, _, _, digest in rows if digest}, now)
    out = [{"channel_id": cid, "anomaly_id": aid, "event": "resolved",
            "payload": {**(payload or {}), "event": "resolved", "status": status, "resolved_at": _iso(now)},
            "state": "pending", "attempts": 0, "next_attempt_at": due.get(cid, now), "created_at": now}
           for cid, aid, payload, status, _ in rows]
    session.execute(insert(AlertOutbox.__table__), out)
    hook = store.ANOMALY_HOOKS.get(session.get_bind())
    _wake_after_commit(session, hook.dispatcher if hook is not None else None)
    return len(out)


def _wake_after_commit(session: Session, dispatcher: "Dispatcher | None") -> None:
    if dispatcher is not None:
        sa_event.listen(session, "after_commit", lambda _s: dispatcher.wake(), once=True)


# --------------------------------------------------------------------------- rendering and sending


def _when(ts: float | None, created: datetime | None) -> float:
    """The line's own time, else when the anomaly was raised (epoch seconds)."""
    if ts is not None:
        return float(ts)
    when = created or utcnow()
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def render(kind: str, alert: dict) -> Any:
    """The JSON body a channel of `kind` gets for an alert (an outbox row's payload)."""
    if kind == "slack":
        return {"text": slack_text(alert)}
    if kind == "alertmanager":
        labels = {"alertname": "LogSenseTest" if alert.get("event") == "test" else ALERTNAME,
                  "stream": str(alert.get("stream") or ""), "severity": str(alert.get("severity") or ""),
                  "template_id": "none" if alert.get("template_id") is None else str(alert["template_id"])}
        annotations = {"summary": alert.get("template") or alert.get("example") or "anomaly",
                       "example": alert.get("example") or "", "link": alert.get("link") or "",
                       "context": alert.get("context_link") or "",
                       "count": str(alert.get("count") or 1), "kind": str(alert.get("kind") or "")}
        out = {"labels": labels, "annotations": annotations, "generatorURL": alert.get("link") or ""}
        if alert.get("created_at"):
            out["startsAt"] = alert["created_at"]
        if alert.get("resolved_at"):
            out["endsAt"] = alert["resolved_at"]
        return [out]
    return alert  # webhook: the alert as it is


def render_digest(kind: str, alerts: list[dict]) -> Any:
    """The JSON body a digest channel of `kind` gets for several alerts: one message for all."""
    if kind == "slack":
        return {"text": f"LogSense digest: {_alerts_word(len(alerts))}\n" + "\n".join(slack_text(a) for a in alerts)}
    if kind == "alertmanager":
        return [am for a in alerts for am in render(kind, a)]
    return {"event": "digest", "count": len(alerts), "alerts": alerts}


def _alerts_word(n: int) -> str:
    return f"{n} alert" + ("" if n == 1 else "s")


def slack_text(alert: dict) -> str:
    template = alert.get("template") or alert.get("example") or "(no template)"
    count = alert.get("count") or 1
    what = f"{count} anomalies" if count > 1 else "anomaly"
    link = alert.get("link") or ""
    if alert.get("event") == "resolved":
        head = f":white_check_mark: Resolved ({alert.get('status')})"
    elif alert.get("event") == "test":
        head = ":bell: Test alert"
    else:
        head = ":rotating_light: LogSense" if alert.get("severity") == "danger" else ":warning: LogSense"
    context = f" · <{alert['context_link']}|the lines around it>" if alert.get("context_link") else ""
    return (f"{head} [{alert.get('severity')}] stream *{alert.get('stream')}*: `{template[:300]}` "
            f"({what}) <{link}|open in LogSense>{context}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a 2xx: urllib would re-send a POST as a GET without its body."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class DeliveryError(Exception):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def deliver(kind: str, url: str, secret: str | None, alert: dict, delivery_id: int | None = None,
            timeout: float = HTTP_TIMEOUT) -> int:
    """Send one alert to a channel; its HTTP status (2xx; email: 250), or DeliveryError saying why not."""
    return send(kind, url, secret, [alert], [] if delivery_id is None else [delivery_id], timeout, digest=False)


def send(kind: str, url: str, secret: str | None, alerts: list[dict], delivery_ids: list[int],
         timeout: float = HTTP_TIMEOUT, *, digest: bool = False) -> int:
    """Send alerts to a channel as one message: a digest of them all, or (digest False) the first."""
    if kind == "email":
        return send_email(url, alerts if digest else alerts[:1], timeout, digest=digest)
    if digest and kind == "webhook" and delivery_ids:
        alerts = [{**a, "delivery_id": d} for a, d in zip(alerts, delivery_ids)]  # a receiver dedupes each
    doc = render_digest(kind, alerts) if digest else render(kind, alerts[0])
    body = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")
    target = url.rstrip("/") + "/api/v2/alerts" if kind == "alertmanager" else url
    headers = {"Content-Type": "application/json", "User-Agent": "LogSense-alerts"}
    if kind == "webhook":
        headers[EVENT_HEADER] = "digest" if digest else str(alerts[0].get("event"))
        if delivery_ids:
            headers[DELIVERY_HEADER] = ",".join(str(d) for d in delivery_ids)
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, body)
    return _post(target, body, headers, timeout)


def _post(target: str, body: bytes, headers: dict, timeout: float) -> int:
    req = urllib.request.Request(target, data=body, method="POST", headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            r.read(4096)
            status = r.status
    except urllib.error.HTTPError as exc:
        detail = exc.read(300).decode("utf-8", "replace").strip() if exc.fp is not None else ""
        raise DeliveryError(f"HTTP {exc.code}" + (f": {detail}" if detail else ""), exc.code) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{type(exc).__name__}: {reason}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}", status)
    return status


# --------------------------------------------------------------------------- email


@dataclass(frozen=True)
class SmtpTarget:
    """An email channel's URL taken apart."""

    host: str
    port: int
    tls: str  # implicit (smtps://) / starttls / none
    user: str | None
    password: str | None = field(repr=False)  # never in a log line
    sender: str
    recipients: tuple[str, ...]


EMAIL_URL_FORM = "smtp://[user:password@]host[:port]?from=sender@example.org&to=a@example.org,b@example.org"


def smtp_target(url: str) -> SmtpTarget:
    """Read an email channel's URL; ValueError saying what is wrong (the API's 422)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"an email channel's url is {EMAIL_URL_FORM} (smtps:// for TLS from the start), "
                         f"not {parts.scheme or 'no'} scheme")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the url's port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"the url names no host: {EMAIL_URL_FORM}")
    params: dict[str, list[str]] = {}
    for pair in filter(None, parts.query.split("&")):
        name, _, value = pair.partition("=")
        params.setdefault(unquote(name), []).append(unquote(value))  # not unquote_plus: a+tag@x keeps its +
    unknown = sorted(set(params) - {"from", "to", "starttls"})
    if unknown:
        raise ValueError(f"unknown url parameter(s) {unknown}: it takes from, to and starttls")
    senders = [v.strip() for v in params.get("from", []) if v.strip()]
    recipients = [a.strip() for v in params.get("to", []) for a in v.split(",") if a.strip()]
    if len(senders) != 1:
        raise ValueError("the url needs one sender: ?from=name@domain")
    if not recipients:
        raise ValueError("the url needs at least one recipient: &to=name@domain[,name@domain...]")
    for address in (*senders, *recipients):
        _check_address(address)
    starttls = (params.get("starttls") or ["false"])[-1].lower()
    if starttls not in ("true", "false"):
        raise ValueError("starttls is true or false")
    if starttls == "true" and parts.scheme == "smtps":
        raise ValueError("starttls=true is for smtp://; smtps:// speaks TLS from the start")
    tls = "implicit" if parts.scheme == "smtps" else "starttls" if starttls == "true" else "none"
    return SmtpTarget(parts.hostname, port or (465 if tls == "implicit" else 587 if tls == "starttls" else 25), tls,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password is not None else None, senders[0], tuple(recipients))


def _check_address(address: str) -> None:
    """A bare address (name@domain): nothing that could add a header or another recipient."""
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or len(address) > 254 or any(c in address for c in ' \t\r\n,;<>"()'):
        raise ValueError(f"{address[:80]!r} is not an email address (name@domain)")


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def email_subject(alerts: list[dict], digest: bool) -> str:
    """Severity, stream and template of one alert; how many and where for a digest."""
    if digest:
        streams = sorted({str(a.get("stream")) for a in alerts})
        worst = max((a.get("severity") for a in alerts), key=severity_rank, default="watch")
        return _one_line(f"[LogSense] digest: {_alerts_word(len(alerts))} ({worst}) on {', '.join(streams)}",
                         SUBJECT_CHARS)
    a = alerts[0]
    what = {"resolved": f"resolved ({a.get('status')})", "test": "test alert"}.get(str(a.get("event")),
                                                                                 a.get("severity"))
    template = a.get("template") or a.get("example") or "anomaly"
    return _one_line(f"[LogSense] {what} · {a.get('stream')} · {template}", SUBJECT_CHARS)


def email_text(alert: dict) -> str:
    """The facts of an alert as plain text: the ones the Slack text has, one a line."""
    count = alert.get("count") or 1
    head = {"resolved": f"Resolved ({alert.get('status')})", "test": "Test alert"}.get(
        str(alert.get("event")), "New anomaly")
    lines = [f"{head}: stream {alert.get('stream')}, severity {alert.get('severity')}",
             f"Template: {alert.get('template') or '(no template)'}",
             f"Example:  {alert.get('example') or ''}",
             f"Count:    {count} anomal{'ies' if count > 1 else 'y'}",
             f"Open in LogSense: {alert.get('link') or ''}"]
    if alert.get("context_link"):
        lines.append(f"The lines around it: {alert['context_link']}")
    return "\n".join(lines) + "\n"


def email_message(target: SmtpTarget, alerts: list[dict], digest: bool) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = email_subject(alerts, digest)
    msg["From"] = target.sender
    msg["To"] = ", ".join(target.recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid("logsense", domain=target.sender.rpartition("@")[2])
    intro = f"LogSense digest: {_alerts_word(len(alerts))}\n\n" if digest else ""
    msg.set_content(intro + "\n".join(email_text(a) for a in alerts))
    return msg


def send_email(url: str, alerts: list[dict], timeout: float = HTTP_TIMEOUT, *, digest: bool = False) -> int:
    """Mail the alerts (one message) through the channel's SMTP server; 250, or DeliveryError."""
    try:
        target = smtp_target(url)
    except ValueError as exc:
        raise DeliveryError(f"bad email url: {exc}") from None
    msg = email_message(target, alerts, digest)
    try:
        if target.tls == "implicit":
            smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(target.host, target.port, timeout=timeout)
        with smtp:
            if target.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            elif target.tls == "none" and target.user:
                smtp.ehlo_or_helo_if_needed()
                if not smtp.has_extn("auth") and smtp.has_extn("starttls"):
                    raise DeliveryError("the server offers a login only after STARTTLS: add starttls=true to the url")
            if target.user:
                smtp.login(target.user, target.password or "")
            refused = smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {exc.smtp_code}: {text[:300]}", exc.smtp_code) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP: every recipient refused: {sorted(exc.recipients)}") from None
    except (smtplib.SMTPException, OSError) as exc:  # connection refused, timeout, TLS, no AUTH offered
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if refused:
        log.warning("email alert: recipients refused: %s", sorted(refused))
    return 250


def test_alert(public_url: str, channel_name: str) -> dict:
    now = utcnow()
    return {"event": "test", "anomaly_id": None, "stream": "(test)", "kind": "test", "severity": "watch",
            "status": "open", "template_id": None, "template": f"LogSense test alert for channel {channel_name}",
            "example": "this is a test", "count": 1, "created_at": _iso(now),
            "resolved_at": _iso(now + timedelta(minutes=5)), "link": anomaly_link(public_url, None)}


def send_test(channel: AlertChannel, public_url: str, timeout: float = HTTP_TIMEOUT) -> int:
    """A test alert to the channel now, in the shape it gets alerts in (a digest channel: a digest of one)."""
    alert = test_alert(public_url, channel.name)
    return send(channel.kind, channel.url, channel.secret, [alert], [], timeout, digest=bool(channel.digest_seconds))


def check_url(kind: str, url: str) -> None:
    """ValueError saying why `url` cannot be a channel of `kind` (the API's 422)."""
    parts = urlsplit(url)
    if parts.password == "***" or "/***" in parts.path:
        raise ValueError("the url holds *** where the API hides a secret: send the real password or path")
    if kind == "email":
        smtp_target(url)
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("an http:// or https:// URL with a host")


def shown_url(kind: str, url: str) -> str:
    """A channel's URL as the API shows it: no password, and a Slack webhook's secret path hidden."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':')[0]}:***@{host}" if ":" in user else netloc
    path = parts.path
    if kind == "slack" and path.count("/") > 1:  # /services/T.../B.../token: all but the first part is secret
        path = "/".join(path.split("/")[:2]) + "/***"
    return urlunsplit((parts.scheme, netloc, path, "" if kind == "slack" else parts.query, ""))


# --------------------------------------------------------------------------- the dispatcher


class Dispatcher(Loop):
    """Background thread that sends the outbox; `wake()` skips the poll wait."""

    name = "logsense-alerts"

    def __init__(self, services: Services):
        super().__init__(POLL_SECONDS)
        self.engine = services.engine
        self.max_attempts = MAX_ATTEMPTS
        self.backoff_base = BACKOFF_BASE
        self.backoff_cap = BACKOFF_CAP
        self.claim_seconds = CLAIM_SECONDS
        self.timeout = HTTP_TIMEOUT
        self._pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="logsense-alert")
        self._busy: set[int] = set()  # channels with a row in flight from this process
        self._lock = threading.Lock()

    def start(self) -> "Dispatcher":
        super().start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self._pool.shutdown(wait=True)  # a send in flight ends within its HTTP timeout, and is recorded

    def round(self) -> bool:
        self.run_once()
        return False  # a send's end wakes the loop: no round right after this one

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_base * 2 ** max(attempts - 1, 0), self.backoff_cap)

    def run_once(self) -> int:
        """Claim each channel's oldest undelivered row if it is due (a digest channel: all its due
        rows), and send them; how many messages were sent off."""
        now = utcnow()
        o, c = AlertOutbox, AlertChannel
        heads = select(func.min(o.id)).where(o.state.in_(("pending", "sending"))).group_by(o.channel_id)
        with Session(self.engine) as session:
            rows = session.execute(
                select(o.id, o.channel_id, o.payload, c.kind, c.url, c.secret, c.digest_seconds)
                .join(c, c.id == o.channel_id)
                .where(o.id.in_(heads), o.next_attempt_at <= now, c.enabled == True)  # noqa: E712
                .order_by(o.id)
            ).all()
        sent = 0
        for row in rows:
            with self._lock:
                if row.channel_id in self._busy:
                    continue
            claimed = self._claim_due(row.channel_id, now) if row.digest_seconds else (
                [(row.id, row.payload)] if self._claim(row.id, now) else [])
            if not claimed:
                continue
            batch = _Batch(row.channel_id, row.kind, row.url, row.secret, bool(row.digest_seconds),
                           [rid for rid, _ in claimed], [payload or {} for _, payload in claimed])
            with self._lock:
                self._busy.add(row.channel_id)
            try:
                self._pool.submit(self._send, batch)
            except RuntimeError:  # shut down meanwhile: the claim expires, the rows are sent later
                with self._lock:
                    self._busy.discard(row.channel_id)
                break
            sent += 1
        return sent

    def _claim(self, row_id: int, now: datetime) -> bool:
        with store.write_session(self.engine) as session:
            return self._claim_in(session, row_id, now)

    def _claim_in(self, session: Session, row_id: int, now: datetime) -> bool:
        t = AlertOutbox.__table__
        result = session.execute(
            update(t).where(t.c.id == row_id, t.c.state.in_(("pending", "sending")), t.c.next_attempt_at <= now)
            .values(state="sending", attempts=t.c.attempts + 1,
                    next_attempt_at=now + timedelta(seconds=self.claim_seconds)))
        return result.rowcount == 1

    def _claim_due(self, channel_id: int, now: datetime) -> list[tuple[int, dict]]:
        """A digest channel's due rows, oldest first, claimed in one transaction (those another
        process took meanwhile left out)."""
        t = AlertOutbox.__table__
        with store.write_session(self.engine) as session:
            due = session.execute(
                select(t.c.id, t.c.payload)
                .where(t.c.channel_id == channel_id, t.c.state.in_(("pending", "sending")), t.c.next_attempt_at <= now)
                .order_by(t.c.id).limit(DIGEST_MAX)).all()
            return [(rid, payload) for rid, payload in due if self._claim_in(session, rid, now)]

    def _send(self, batch: "_Batch") -> None:
        try:
            error = None
            try:
                send(batch.kind, batch.url, batch.secret, batch.alerts, batch.ids, self.timeout, digest=batch.digest)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 (a bad row must not stop the channel forever)
                error = f"{type(exc).__name__}: {exc}"
            self._record(batch.ids, error)
        except Exception:  # noqa: BLE001
            log.exception("recording alert delivery %s failed", batch.ids)
        finally:
            with self._lock:
                self._busy.discard(batch.channel_id)
            self._wake.set()  # the channel's next row may be due

    def _record(self, row_ids: list[int], error: str | None) -> None:
        """Mark the rows of one message: all sent, or all tried again after the same backoff (each
        `failed` once it had its `max_attempts`)."""
        t = AlertOutbox.__table__
        now = utcnow()
        mine = (t.c.id.in_(row_ids), t.c.state == "sending")
        with store.write_session(self.engine) as session:
            if error is None:
                session.execute(update(t).where(*mine).values(state="sent", sent_at=now, last_error=None))
                return
            attempts = session.execute(select(func.max(t.c.attempts)).where(t.c.id.in_(row_ids))).scalar() or 0
            retry = now + timedelta(seconds=self.backoff(attempts))
            session.execute(update(t).where(*mine, t.c.attempts >= self.max_attempts)
                            .values(state="failed", last_error=error[:2000], next_attempt_at=now))
            session.execute(update(t).where(*mine).values(state="pending", last_error=error[:2000],
                                                          next_attempt_at=retry))
        failed = attempts >= self.max_attempts
        log.log(logging.WARNING if failed else logging.INFO, "alert delivery %s attempt %d failed%s: %s",
                row_ids, attempts, " for good" if failed else "", error)


@dataclass(frozen=True)
class _Batch:
    """What one message to one channel carries: one row, or a digest channel's due rows."""

    channel_id: int
    kind: str
    url: str
    secret: str | None
    digest: bool
    ids: list[int]
    alerts: list[dict]


# --------------------------------------------------------------------------- the app's side


def start(services: Services) -> None:
    """In the lifespan, once the engine and registry exist: the enqueue hook (`services.alerts`),
    and the dispatcher unless `alerts_enabled` is off."""
    hook = services.alerts = AlertHook(services)
    store.ANOMALY_HOOKS[services.engine] = hook
    if services.settings.alerts_enabled and services.settings.role in ("all", "worker"):  # a cluster: workers send
        hook.dispatcher = Dispatcher(services).start()


def stop(services: Services) -> None:
    hook = services.alerts
    if hook is None:
        return
    if hook.dispatcher is not None:
        hook.dispatcher.stop()
        hook.dispatcher = None
    if services.engine is not None:
        store.ANOMALY_HOOKS.pop(services.engine, None)


def invalidate(services: Services) -> None:
    hook = services.alerts
    if hook is not None:
        hook.invalidate()
