"""An optional TCP syslog listener (`syslog_port`, `logsense serve --syslog-port N`) onto the ingest path.

Messages: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`) and RFC 3164 (`<PRI>Mmm dd
hh:mm:ss HOST TAG[pid]: MSG`, an ISO timestamp or a year and zone after the time allowed too).
Framing (RFC 6587), chosen per connection by its first byte: a digit means octet counting
(`<len> <msg>`), anything else newline-terminated messages.

The stream of a message is its app name (5424 APP-NAME, 3164 TAG without `[pid]`) or, with
`syslog_stream_by=host` (or when there is no app name), its hostname; `syslog` when neither is
there. Names are sanitised to the stream-name rule (other characters become `-`, at most 64).
Unknown streams are created as the Loki and OTLP doors create them (`push_create_streams`), by
the same functions (`server/push.py`): `resolve_streams`, `make_batch` (the records checks), then
`ingest()` per stream. Each line keeps the message as its text, the message's time as its
timestamp, and as attributes: facility, severity (a level name), hostname, app, procid, msgid and
the structured data (`{SD-ID: {PARAM: value}}`; a repeated PARAM gives a list).

A message that cannot be parsed is stored anyway, as a plain line (the frame without a valid PRI)
with whatever was parsed, and `malformed` in its attributes saying why. A line over
`max_line_bytes` is cut there (`truncated: true`). Every message is counted in
`logsense_syslog_messages_total{outcome}`: `stored`, `malformed` (stored as a plain line) or
`rejected` (not stored: an unknown stream with `push_create_streams` off, a record the ingest
checks refuse, an ingest failure; each logged).

Flow: the event loop only splits frames. Each connection buffers them and hands a batch to a
bounded queue every `BATCH_MESSAGES` frames or `FLUSH_SECONDS`, whichever comes first; one
consumer parses and stores each batch in its own worker thread (the HTTP API's thread pool is
left alone). A full queue makes the connections wait: they stop reading, so TCP pushes back on
the senders. Nothing is authenticated: the listener binds to `syslog_host` (loopback by default).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from logsense.server.batch import LATEST_TS
from logsense.server.push import Entry, check_stream_name, json_safe, make_batch, resolve_streams
from logsense.server.services import Services

log = logging.getLogger("logsense.syslog")

BATCH_MESSAGES = 1000  # a connection hands its frames on at this many (at most max_lines_per_batch) ...
BATCH_BYTES = 4 * 1024 * 1024  # ... or this many bytes of them ...
FLUSH_SECONDS = 0.2  # ... or this long after the first of them arrived
QUEUE_BATCHES = 4  # batches waiting to be stored; then the connections stop reading
READ_BYTES = 64 * 1024
FRAME_SLACK = 8192  # bytes a frame may have beyond max_line_bytes: its header and structured data
MAX_LENGTH_DIGITS = 10  # an octet count longer than this is not one
DEFAULT_STREAM = "syslog"  # a message naming neither an app nor a host
MAX_FIELD = 255  # characters kept of a header field (hostname, app, procid, msgid) in the attributes

SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "solaris-cron",
              "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7")
MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                      "Dec"), 1)}
BOM = "\ufeff"


# --------------------------------------------------------------------------- parsing


@dataclass
class Message:
    """One syslog message as a line to store."""

    text: str  # the line
    timestamp: float | None = None  # epoch seconds
    app: str | None = None
    hostname: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    malformed: str | None = None  # why it could not be parsed (then stored as a plain line)

    def stream_name(self, by: str = "app") -> str:
        """The stream it goes to: its app name or hostname (`by` first), sanitised to the name rule."""
        first, second = (self.app, self.hostname) if by == "app" else (self.hostname, self.app)
        return sanitise_stream_name(first or second or DEFAULT_STREAM)


_NOT_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def sanitise_stream_name(name: str) -> str:
    """`name` under the stream-name rule: letters, digits, `_`, `.`, `-` (others become `-`), 1 to 64."""
    name = _NOT_NAME.sub("-", name)[:64]
    if name in ("", ".", ".."):
        return DEFAULT_STREAM if not name else "-" * len(name)
    return name


class _Malformed(ValueError):
    pass


_PRI = re.compile(r"<(\d{1,3})>")
_5424_HEAD = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")  # after the PRI: VERSION TS HOST APP PROCID MSGID
_SD_NAME = re.compile(r'[^= \]"]{1,32}')
_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)(?: |$)")
_BSD_TIME = re.compile(
    r"([A-Z][a-z]{2}) {1,2}(\d{1,2})(?: (\d{4}))? (\d\d):(\d\d):(\d\d)(\.\d{1,9})?"
    r"(?: (UTC|GMT|Z|[+-]\d\d:?\d\d)(?= ))?(?: |$)"
)
_TAG = re.compile(r"([^\s\[\]:]{1,128})(?:\[([^\]\s]{0,128})\])?:(?: |$)")  # TAG[pid]: (3164 section 5.3)


def parse(frame: bytes, now: datetime | None = None) -> Message:
    """A frame as a `Message`: RFC 5424, else RFC 3164; what neither reads is a plain line with
    whatever was parsed and `malformed` saying why."""
    text = frame.decode("utf-8", "replace").rstrip("\r\n\x00")
    m = _PRI.match(text)
    pri = int(m.group(1)) if m else None
    if pri is None or pri > 191:
        return Message(text, malformed="no <PRI> (0 to 191) at the start")
    attributes: dict[str, Any] = {"facility": FACILITIES[pri >> 3], "severity": SEVERITIES[pri & 7]}
    rest = text[m.end():]
    try:
        if rest.startswith("1 "):
            return _parse_5424(rest, attributes)
        return _parse_3164(rest, attributes, now or datetime.now(timezone.utc))
    except _Malformed as exc:
        return Message(rest, attributes={k: v for k, v in attributes.items() if v is not None}, malformed=str(exc),
                       app=attributes.get("app"), hostname=attributes.get("hostname"))


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _parse_5424(rest: str, attributes: dict[str, Any]) -> Message:
    m = _5424_HEAD.match(rest)
    if not m:
        raise _Malformed("RFC 5424 header incomplete (VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID)")
    stamp, host, app, procid, msgid = map(_nil, m.groups())
    attributes.update(hostname=host, app=app, procid=procid, msgid=msgid)
    timestamp = None
    if stamp is not None:
        timestamp = _iso_seconds(stamp)
        if timestamp is None:
            raise _Malformed(f"RFC 5424 TIMESTAMP {stamp[:40]!r} is not an RFC 3339 time")
    sd, pos = _structured_data(rest, m.end())
    if sd:
        attributes["structured_data"] = sd
    msg = rest[pos:]
    if msg.startswith(" "):
        msg = msg[1:]
    elif msg:
        raise _Malformed("no space between STRUCTURED-DATA and MSG")
    return _message(msg.removeprefix(BOM), timestamp, attributes)


def _structured_data(rest: str, pos: int) -> tuple[dict[str, Any], int]:
    """RFC 5424 STRUCTURED-DATA at `pos`: `-` or SD-ELEMENTs, as {SD-ID: {PARAM-NAME: value}}."""
    if rest.startswith("-", pos):
        return {}, pos + 1
    if not rest.startswith("[", pos):
        raise _Malformed("STRUCTURED-DATA is neither '-' nor [SD-ELEMENT]")
    sd: dict[str, Any] = {}
    while rest.startswith("[", pos):
        m = _SD_NAME.match(rest, pos + 1)
        if not m:
            raise _Malformed(f"SD-ELEMENT without an SD-ID at character {pos}")
        params = sd.setdefault(m.group(0), {})
        pos = m.end()
        while True:
            if rest.startswith("]", pos):
                pos += 1
                break
            if not rest.startswith(" ", pos):
                raise _Malformed(f"SD-ELEMENT {m.group(0)!r} not closed")
            name = _SD_NAME.match(rest, pos + 1)
            if not name or not rest.startswith('="', name.end()):
                raise _Malformed(f'SD-PARAM of {m.group(0)!r} is not NAME="value"')
            value, pos = _param_value(rest, name.end() + 2)
            key = name.group(0)
            if key in params:  # a repeated PARAM-NAME (RFC 5424 7.2.2 repeats `ip`): all of them, in order
                params[key] = (params[key] if isinstance(params[key], list) else [params[key]]) + [value]
            else:
                params[key] = value
    return sd, pos


def _param_value(rest: str, pos: int) -> tuple[str, int]:
    """A PARAM-VALUE from `pos` (after its opening quote) to its closing quote; `\\"`, `\\\\` and `\\]` unescaped."""
    out = []
    while pos < len(rest):
        c = rest[pos]
        if c == "\\" and pos + 1 < len(rest) and rest[pos + 1] in '"\\]':
            out.append(rest[pos + 1])
            pos += 2
        elif c == '"':
            return "".join(out), pos + 1
        else:
            out.append(c)
            pos += 1
    raise _Malformed("PARAM-VALUE not closed by '\"'")


def _iso_seconds(stamp: str) -> float | None:
    """An RFC 3339 time in epoch seconds (UTC when it names no offset); None if it is not one."""
    try:
        dt = datetime.fromisoformat(stamp.replace("z", "Z").replace("t", "T"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    except (ValueError, OverflowError):
        return None


def _parse_3164(rest: str, attributes: dict[str, Any], now: datetime) -> Message:
    m = _ISO.match(rest)
    if m:
        timestamp = _iso_seconds(m.group(1))
    else:
        m = _BSD_TIME.match(rest)
        if not m:
            raise _Malformed("neither an RFC 5424 header nor an RFC 3164 TIMESTAMP after the PRI")
        timestamp = _bsd_seconds(m, now)
    if timestamp is None:
        raise _Malformed(f"RFC 3164 TIMESTAMP {m.group(0).strip()!r} is not a valid time")
    rest = rest[m.end():]
    host = None
    tag = _TAG.match(rest)
    if not tag:  # a HOSTNAME first (a message without one starts with its TAG: `app[1]: ...`)
        host, _, rest = rest.partition(" ")
        tag = _TAG.match(rest)
    app = procid = None
    if tag:
        app, procid = tag.group(1), tag.group(2) or None
        rest = rest[tag.end():]
    attributes.update(hostname=host or None, app=app, procid=procid)
    return _message(rest, timestamp, attributes)


def _bsd_seconds(m: re.Match, now: datetime) -> float | None:
    """`Mmm dd [yyyy] hh:mm:ss[.frac] [zone]`: in the current year (the year before when that would be
    more than a day ahead: December's messages read in January), UTC unless a zone is given."""
    month, day, year, hh, mm, ss, frac, zone = m.groups()
    if month not in MONTHS:
        return None
    tz = timezone.utc
    if zone and zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(-offset if zone[0] == "-" else offset)
    try:
        dt = datetime(int(year or now.year), MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=tz)
        if year is None and dt - now > timedelta(days=1):
            dt = dt.replace(year=dt.year - 1)
    except ValueError:  # Feb 30, 25:00:00, or Feb 29 of the year before
        return None
    return dt.timestamp() + (float(frac) if frac else 0.0)


def _message(text: str, timestamp: float | None, attributes: dict[str, Any]) -> Message:
    attributes = {k: v for k, v in attributes.items() if v is not None}
    return Message(text, timestamp, attributes.get("app"), attributes.get("hostname"), attributes)


# --------------------------------------------------------------------------- framing


class Framer:
    """RFC 6587 framing of one connection: octet counting (`LEN SP MSG`) when its first byte is a
    digit, else messages ended by LF. Frames come out as (bytes, problem): problem is None, or
    says the frame was cut (over `max_frame` bytes: the rest is skipped), ended early (the
    connection closed mid-frame) or had no valid octet count (then read up to the next LF)."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self.octets: bool | None = None  # None until the first byte
        self.buf = bytearray()
        self.skip = 0  # octets of a cut frame still to drop
        self.skip_line = False  # drop up to the next LF (a cut LF-framed message)

    def feed(self, data: bytes) -> list[tuple[bytes, str | None]]:
        if self.octets is None and data:
            self.octets = data[:1].isdigit()
        self.buf += data
        return self._frames(final=False)

    def close(self) -> list[tuple[bytes, str | None]]:
        """The frames left when the connection ends: a last LF-framed message without its LF is
        whole; a partial octet-counted one is kept, marked."""
        return self._frames(final=True)

    def _frames(self, final: bool) -> list[tuple[bytes, str | None]]:
        out: list[tuple[bytes, str | None]] = []
        buf = self.buf
        pos = 0
        while True:
            if self.skip:
                n = min(self.skip, len(buf) - pos)
                self.skip -= n
                pos += n
                if self.skip:
                    break
            if self.skip_line:
                end = buf.find(b"\n", pos)
                if end < 0:
                    pos = len(buf)
                    break
                pos, self.skip_line = end + 1, False
            if pos >= len(buf):
                break
            if self.octets:
                space = buf.find(b" ", pos, pos + MAX_LENGTH_DIGITS + 1)
                digits = bytes(buf[pos:space]) if space > pos else b""
                if space < 0 and len(buf) - pos <= MAX_LENGTH_DIGITS and buf[pos:].isdigit() and not final:
                    break  # the octet count is still arriving
                if digits.isdigit() and not digits.startswith(b"0"):
                    length = int(digits)
                    start = space + 1
                    if length > self.max_frame:
                        if len(buf) - start < self.max_frame and not final:
                            break  # wait for the part that is kept
                        kept = bytes(buf[start:start + self.max_frame])
                        out.append((kept, f"frame of {length} octets cut to {len(kept)}"))
                        self.skip = length - (min(len(buf), start + length) - start)
                        pos = min(len(buf), start + length)
                        continue
                    if len(buf) - start < length:
                        if final:
                            out.append((bytes(buf[start:]), f"connection closed {length - (len(buf) - start)} "
                                                            f"octets short of the frame's {length}"))
                            pos = len(buf)
                        break
                    out.append((bytes(buf[start:start + length]), None))
                    pos = start + length
                    continue
                if buf[pos:pos + 1] in (b"\n", b"\r", b"\x00"):  # stray separators between frames
                    pos += 1
                    continue
                problem: str | None = "no octet count (RFC 6587 LEN SP) before the frame: read up to LF"
            else:
                problem = None
            end = buf.find(b"\n", pos)
            if end < 0:
                if len(buf) - pos > self.max_frame:
                    out.append((bytes(buf[pos:pos + self.max_frame]), f"message over {self.max_frame} bytes "
                                                                       "without LF: cut"))
                    pos, self.skip_line = len(buf), True
                elif final:
                    out.append((bytes(buf[pos:]), problem))
                    pos = len(buf)
                break
            frame = bytes(buf[pos:end])
            pos = end + 1
            if len(frame) > self.max_frame:
                frame, problem = frame[:self.max_frame], f"message over {self.max_frame} bytes: cut"
            out.append((frame, problem))
        del buf[:pos]
        return [(f, p) for f, p in out if f.strip(b"\r\n\x00 ") or p]


# --------------------------------------------------------------------------- storing


@dataclass
class Frames:
    """A connection's batch: frames and their framing problems, when they arrived."""

    frames: list[tuple[bytes, str | None]]
    received: datetime


def _cut(text: str, limit: int) -> str:
    """`text` at most `limit` UTF-8 bytes (not splitting a character)."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8", "replace")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def to_entries(batch: Frames, settings: Any) -> tuple[dict[str, list[Entry]], dict[int, bool]]:
    """A batch as push `Entry`s by stream name, and which entries (by index) were malformed."""
    groups: dict[str, list[Entry]] = {}
    malformed: dict[int, bool] = {}
    for i, (frame, problem) in enumerate(batch.frames):
        msg = parse(frame, batch.received)
        attributes = {k: v[:MAX_FIELD] if isinstance(v, str) else v for k, v in msg.attributes.items()}
        reasons = [p for p in (problem, msg.malformed) if p]
        timestamp = msg.timestamp
        if timestamp is not None and not 0 < timestamp <= LATEST_TS:
            reasons.append("timestamp before 1970 or after 9999: left out")
            timestamp = None
        text = msg.text
        if not text.strip():  # a message without MSG: the line is the frame
            text = frame.decode("utf-8", "replace").strip() or "-"
        cut = _cut(text, settings.max_line_bytes)
        if cut != text:
            text, attributes["truncated"] = cut, True
        if reasons:
            attributes["malformed"] = "; ".join(reasons)
        attributes = json_safe(attributes)
        if len(json.dumps(attributes)) > settings.max_line_bytes and "structured_data" in attributes:
            del attributes["structured_data"]  # else the record would be refused (attributes over max_line_bytes)
            attributes["truncated"] = True
        malformed[i] = bool(reasons)
        groups.setdefault(msg.stream_name(settings.syslog_stream_by), []).append(
            Entry(i, json_safe(text), int(timestamp * 1_000_000_000) if timestamp else None, attributes))
    return groups, malformed


class SyslogListener:
    """The TCP listener of one app: `await start()`, `await stop()` (both on the app's event loop)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.metrics = services.metrics
        self.max_frame = self.settings.max_line_bytes + FRAME_SLACK
        self.batch_messages = min(BATCH_MESSAGES, self.settings.max_lines_per_batch)
        self.server: asyncio.AbstractServer | None = None
        self.queue: asyncio.Queue[Frames | None] = asyncio.Queue(QUEUE_BATCHES)
        self.connections: set[asyncio.Task] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="logsense-syslog")
        self.consumer: asyncio.Task | None = None
        self.abandon = threading.Event()  # stopping and out of time: count what is left as rejected
        self.port: int | None = None
        self._warned: dict[str, float] = {}

    async def start(self) -> "SyslogListener":
        s = self.settings
        self.server = await asyncio.start_server(self._connection, s.syslog_host, s.syslog_port, limit=READ_BYTES)
        self.port = self.server.sockets[0].getsockname()[1]
        self.consumer = asyncio.get_running_loop().create_task(self._consume(), name="syslog-consumer")
        log.info("syslog listener on %s:%s (TCP; RFC 5424/3164; no authentication)", s.syslog_host, self.port)
        from logsense.server.cli import is_loopback

        if not is_loopback(s.syslog_host):
            log.warning("the syslog listener on %s takes messages from anyone who can reach it (no authentication): "
                        "keep it behind the network's controls", s.syslog_host)
        return self

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop listening, end the connections (what they sent is still stored, unless the models
        never loaded or `timeout` passes: then it is counted as rejected and logged), drain the queue."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        registry = self.services.registry
        if registry is not None and registry.ready_reason():
            self.abandon.set()  # no waiting for models while the server stops
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def drain() -> None:
            if self.connections:
                await asyncio.wait(list(self.connections))
            if self.consumer is not None:
                await self.queue.put(None)
                await asyncio.shield(self.consumer)

        try:
            await asyncio.wait_for(drain(), timeout)
        except asyncio.TimeoutError:
            self.abandon.set()  # the consumer counts what is left as rejected and ends
            pending = [t for t in (*self.connections, self.consumer) if t is not None and not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=max(1.0, deadline + 5 - loop.time()))
            for task in pending:
                if not task.done():
                    task.cancel()  # a connection still waiting on the queue, or the consumer waiting for more
        self.executor.shutdown(wait=False)

    # ---- the event loop side: frames in, batches out

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        self.writers.add(writer)
        framer = Framer(self.max_frame)
        pending: list[tuple[bytes, str | None]] = []
        size = 0  # bytes of the pending frames
        first = 0.0
        loop = asyncio.get_running_loop()
        try:
            while True:
                timeout = None if not pending else max(0.0, first + FLUSH_SECONDS - loop.time())
                try:
                    data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
                except asyncio.TimeoutError:
                    await self._hand_on(pending)
                    pending, size = [], 0
                    continue
                except (ConnectionError, OSError):
                    data = b""
                frames = framer.feed(data) if data else framer.close()
                if frames and not pending:
                    first = loop.time()
                pending += frames
                size += sum(len(f) for f, _ in frames)
                while len(pending) >= self.batch_messages or size >= BATCH_BYTES:
                    n = min(len(pending), self.batch_messages)
                    await self._hand_on(pending[:n])
                    pending = pending[n:]
                    size = sum(len(f) for f, _ in pending)
                    first = loop.time()
                if not data:
                    break
                await asyncio.sleep(0)  # a flooding connection lets the rest of the loop run between reads
            await self._hand_on(pending)
        except Exception:  # noqa: BLE001 (one connection's failure ends it, not the listener)
            log.exception("syslog connection failed; %d frames not stored", len(pending))
            self.metrics.syslog_messages.labels("rejected").inc(len(pending))
        finally:
            self.writers.discard(writer)
            writer.close()
            self.connections.discard(task)

    async def _hand_on(self, frames: list[tuple[bytes, str | None]]) -> None:
        """Queue a batch; waits (so this connection stops reading) while the queue is full."""
        if frames:
            await self.queue.put(Frames(frames, datetime.now(timezone.utc)))

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self.queue.get()
            try:
                if batch is None:
                    return
                await loop.run_in_executor(self.executor, self.store, batch)
            except Exception:  # noqa: BLE001 (the consumer must outlive any batch)
                log.exception("syslog batch of %d messages not stored", len(batch.frames) if batch else 0)
                self.metrics.syslog_messages.labels("rejected").inc(len(batch.frames) if batch else 0)
            finally:
                self.queue.task_done()

    # ---- the worker thread side: parse, resolve streams, ingest

    def _warn(self, what: str, message: str, *args: Any) -> None:
        """A warning at most once a minute per `what` (a flood of refusals must not flood the log)."""
        now = time.monotonic()
        if now - self._warned.get(what, -1e9) >= 60:
            self._warned[what] = now
            log.warning(message, *args)

    def _models_ready(self) -> bool:
        """Wait while the models load (the queue fills meanwhile and the senders wait); False when
        the listener stops before they are ready."""
        registry = self.services.registry
        while registry is not None and (reason := registry.ready_reason()):
            if self.abandon.is_set():
                return False
            self._warn("models", "syslog messages wait for the models (%s)", reason)
            self.abandon.wait(0.2)
        return True

    def store(self, batch: Frames) -> None:
        """Parse and store one batch (in the listener's worker thread); every message is counted."""
        from logsense.server.ingest import Replayed, ingest
        from logsense.server.registry import ModelsUnavailable

        counts = self.metrics.syslog_messages
        settings = self.settings
        if self.abandon.is_set() or not self._models_ready():
            self._warn("abandoned", "syslog: %d messages not stored: the server stopped first (models not loaded, "
                       "or storing fell too far behind)", len(batch.frames))
            counts.labels("rejected").inc(len(batch.frames))
            return
        groups, malformed = to_entries(batch, settings)
        for name in list(groups):
            problem = check_stream_name(name)  # cannot fail after sanitise_stream_name: the same rule
            if problem:
                self._warn(f"name:{name}", "syslog: %s", problem)
                counts.labels("rejected").inc(len(groups.pop(name)))
        streams, unknown = resolve_streams(self.services, list(groups), settings.push_create_streams)
        for name, entries in groups.items():
            if name in unknown:
                self._warn(f"unknown:{name}", "syslog: %d messages not stored: %s", len(entries), unknown[name])
                counts.labels("rejected").inc(len(entries))
                continue
            records = make_batch(entries, settings)
            for error in records.errors:
                self._warn(f"refused:{name}", "syslog: a message for stream %r not stored: %s", name, error["error"])
            counts.labels("rejected").inc(len(records.errors))
            if not records.messages:
                continue
            try:
                ingest(self.services, streams[name], records, None)
            except Replayed:  # no idempotency key: cannot happen, but it would mean stored
                pass
            except (ModelsUnavailable, Exception) as exc:  # noqa: BLE001 (counted and logged, then the next stream)
                log.warning("syslog: %d messages for stream %r not stored: %s", len(records.messages), name, exc,
                            exc_info=not isinstance(exc, ModelsUnavailable))
                counts.labels("rejected").inc(len(records.messages))
                continue
            bad = sum(1 for i in records.indexes if malformed.get(i))
            counts.labels("stored").inc(len(records.messages) - bad)
            counts.labels("malformed").inc(bad)


async def start_syslog(services: Services) -> SyslogListener | None:
    """The listener when `syslog_port` is set (from the app's lifespan), else None."""
    if services.settings.syslog_port is None:
        return None
    return await SyslogListener(services).start()


async def stop_syslog(services: Services) -> None:
    listener = services.syslog
    if listener is not None:
        services.syslog = None
        await listener.stop()
