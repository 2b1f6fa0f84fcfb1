"""`POST /api/v1/streams/{name}/logs`: store a batch of lines and answer each line's verdict so far.

Bodies:
- `application/json` `{"lines": ["raw line", ...]}`
- `application/json` `{"records": [{"message": ..., "timestamp": ..., "session": ..., "attributes": {...}}]}`
  (`timestamp`: epoch seconds, milliseconds, microseconds or nanoseconds, or ISO 8601; `session`: a key or a list of keys, used instead of
  the stream's session regex; `attributes`: any JSON object, stored with the line)
- `text/plain`: one line per line (blank lines skipped; an index still counts them).

Every accepted line is parsed, scored by RAPID, stored and put into its windows in one
transaction (a request embeds at most `inline_embed_texts` new masked texts itself; past that
their lines answer `pending` and `server.encoder` scores them in the background), committed (SQLite: WAL, synchronous=FULL) before the answer is sent. A bad line or
record is reported by index in `errors` and the others are still stored: status 200 when all
were stored, 207 when some were, 422 when none was. Over `max_lines_per_batch`: 413 for the
whole batch; a line over `max_line_bytes`: an error for that line.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlmodel import Session

from logsense.models.policy import combine
from logsense.models.parsing import ParsedLine
from logsense.server import store, windows
from logsense.server.api.deps import get_stream
from logsense.server.api.streams import LOW_HEADER_PARSE_RATE
from logsense.server.registry import ModelsUnavailable
from logsense.server.services import Services
from logsense.server.settings import Settings
from logsense.server.tables import Stream, utcnow

log = logging.getLogger("logsense.ingest")

router = APIRouter(prefix="/api/v1/streams", tags=["ingest"])

MAX_SESSION_KEYS = 64  # explicit session keys per record


@dataclass
class Item:
    """One record's line to store, with the fields a record may give."""

    index: int
    message: str
    timestamp: float | None = None  # from the record (else from the line's header)
    sessions: list[str] | None = None  # from the record (else by the session regex)
    attributes: dict | None = None


@dataclass
class Batch:
    """The storable lines of a request, column by column, and why the others are not."""

    indexes: list[int] = field(default_factory=list)  # each line's position in the request
    messages: list[str] = field(default_factory=list)
    records: list[Item] | None = None  # a records body: each line's record (its own timestamp, sessions, attributes)
    errors: list[dict] = field(default_factory=list)

    def add(self, index: int, message: str) -> None:
        self.indexes.append(index)
        self.messages.append(message)


class LineOut(BaseModel):
    index: int  # position in the request
    id: int  # stored line id
    template_id: int | None
    template: str | None
    rapid_score: float | None  # None in train mode, and while pending
    rapid_flag: bool | None
    severity: str  # train / normal / watch (so far: LogGPT may raise it when the window is checked) / pending
    # (a new text the background encoder has yet to embed: its RAPID verdict follows, usually within seconds)
    pending: bool  # a LogGPT check of one of its windows, or its RAPID verdict, is still to come


class IngestOut(BaseModel):
    stream: str
    train_mode: bool
    accepted: int
    rejected: int
    queued_windows: int  # windows this batch closed and queued for LogGPT
    lines: list[LineOut]
    errors: list[dict]  # {"index": i, "error": "..."} per rejected line or record
    warnings: list[str] = []  # e.g. most of the batch's lines did not match the stream's header format


# --------------------------------------------------------------------------- request body


def line_error(index: int, message: str) -> dict:
    """One refused line or record of a batch, as the answer's `errors` lists it."""
    return {"index": index, "error": message}


def _check_text(text: str, settings: Settings) -> str | None:
    """Why a line cannot be stored, or None."""
    if not text or text.isspace():
        return "empty line"
    if len(text) * 4 > settings.max_line_bytes:  # could be over: count the bytes
        try:
            n = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return "line is not valid Unicode (lone surrogate)"
        if n > settings.max_line_bytes:
            return f"line over max_line_bytes ({settings.max_line_bytes} bytes)"
    elif not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "line is not valid Unicode (lone surrogate)"
    if "\x00" in text:
        return "line contains a NUL byte"
    return None


LATEST_TS = 253402300799.0  # 9999-12-31T23:59:59Z: any later one cannot be shown as a date
_EPOCH_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (1e20, 1e9))  # below -> divisor: s, ms, us, ns


def epoch_seconds(value: float) -> float:
    """A number a shipper sent as a timestamp, in seconds: milliseconds, microseconds and
    nanoseconds since the epoch are recognised by their size (seconds below 1e11, the year 5138).
    ValueError when it is negative, not finite or beyond the year 9999 once in seconds."""
    if not math.isfinite(value) or value < 0:
        raise ValueError("timestamp must be a finite time since 1970 (epoch seconds, ms, us or ns)")
    for below, divisor in _EPOCH_UNITS:
        if value < below:
            return value / divisor
    raise ValueError(f"timestamp {value:g} is beyond the year 9999 in any epoch unit")


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("timestamp must be epoch seconds or an ISO 8601 string, not a boolean")
    if isinstance(value, (int, float)):
        ts = epoch_seconds(float(value))
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"timestamp {value[:40]!r} is not ISO 8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        try:
            ts = dt.timestamp()
        except (OverflowError, ValueError):
            raise ValueError("timestamp must fall between 1970 and the year 9999") from None
    else:
        raise ValueError("timestamp must be epoch seconds or an ISO 8601 string")
    if not math.isfinite(ts) or not 0 <= ts <= LATEST_TS:
        raise ValueError("timestamp must fall between 1970 and the year 9999")
    return ts


def read_record(index: int, rec: Any, settings: Settings) -> Item:
    """One record of a records body (or of a push, `server.push`), checked; ValueError says why not."""
    if not isinstance(rec, dict):
        raise ValueError("a record must be a JSON object with a 'message'")
    unknown = set(rec) - {"message", "timestamp", "session", "attributes"}
    if unknown:
        raise ValueError(f"unknown record field(s) {sorted(unknown)}")
    message = rec.get("message")
    if not isinstance(message, str):
        raise ValueError("'message' must be a string")
    problem = _check_text(message, settings)
    if problem:
        raise ValueError(problem)
    item = Item(index, message)
    if rec.get("timestamp") is not None:
        item.timestamp = _timestamp(rec["timestamp"])
    session = rec.get("session")
    if session is not None:
        keys = [session] if isinstance(session, str) else session
        if not isinstance(keys, list) or not all(isinstance(k, str) and 0 < len(k) <= 255 for k in keys):
            raise ValueError("'session' must be a non-empty string (<= 255 chars) or a list of them")
        if any("\x00" in k for k in keys):
            raise ValueError("'session' contains a NUL character")
        if len(keys) > MAX_SESSION_KEYS:
            raise ValueError(f"more than {MAX_SESSION_KEYS} session keys")
        item.sessions = list(dict.fromkeys(keys))
    attributes = rec.get("attributes")
    if attributes is not None:
        if not isinstance(attributes, dict):
            raise ValueError("'attributes' must be a JSON object")
        if len(json.dumps(attributes)) > settings.max_line_bytes:
            raise ValueError(f"attributes over max_line_bytes ({settings.max_line_bytes} bytes)")
        item.attributes = attributes
    return item


def _too_many(n: int, settings: Settings) -> HTTPException:
    return HTTPException(413, f"batch of {n} lines over max_lines_per_batch ({settings.max_lines_per_batch})")


def _add_line(batch: Batch, index: int, text: str, settings: Settings) -> None:
    """The line as an item, or its index and reason in `errors`."""
    problem = _check_text(text, settings)
    if problem:
        batch.errors.append(line_error(index, problem))
    else:
        batch.add(index, text)


def _all_clean(entries: list, settings: Settings) -> bool:
    """Would `_check_text` pass every entry? Checked in bulk (C loops, ~0.2 us a line instead of
    ~1.2) for the usual batch: strings, none blank, all ASCII (a byte a character) without NUL,
    none over max_line_bytes. False means: look at each line."""
    if set(map(type, entries)) != {str} or not all(entries) or any(map(str.isspace, entries)):
        return False
    joined = "\n".join(entries)
    return joined.isascii() and "\x00" not in joined and max(map(len, entries)) <= settings.max_line_bytes


def parse_body(body: bytes, content_type: str, settings: Settings) -> Batch:
    """The request body as storable lines and per-line errors; a 4xx for a body that cannot be read at all."""
    media = content_type.split(";", 1)[0].strip().lower()
    batch = Batch()
    if media in ("text/plain", ""):
        if media == "" and body.lstrip()[:1] in (b"{", b"["):
            media = "application/json"
        else:
            raw_lines = body.split(b"\n")
            if raw_lines and raw_lines[-1] == b"":
                raw_lines.pop()
            n_lines = sum(1 for r in raw_lines if r.strip())  # blank lines are skipped, so not counted
            if n_lines > settings.max_lines_per_batch:
                raise _too_many(n_lines, settings)
            for i, raw in enumerate(raw_lines):
                raw = raw.removesuffix(b"\r")
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    batch.errors.append(line_error(i, f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                    continue
                _add_line(batch, i, text, settings)
            if not batch.messages and not batch.errors:
                raise HTTPException(422, "empty batch: no lines in the body")
            return batch
    if media != "application/json" and not media.endswith("+json"):
        raise HTTPException(415, f"unsupported content type {media!r}: send application/json or text/plain")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:  # orjson refuses some bodies json reads (lone surrogates: per-line errors)
        data = loads_strictly(body)
    return _entries(data, settings, batch)


def loads_strictly(body: bytes) -> Any:
    """json.loads, with its errors as 400s that say where."""
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise HTTPException(400, "malformed JSON: the body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise HTTPException(400, f"malformed JSON at character {exc.pos}: {exc.msg}") from None
    except RecursionError:
        raise HTTPException(400, "malformed JSON: nested too deeply") from None


def _entries(data: Any, settings: Settings, batch: Batch) -> Batch:
    """The storable lines and per-line errors of a decoded JSON body."""
    if not isinstance(data, dict):
        raise HTTPException(422, 'the body must be a JSON object: {"lines": [...]} or {"records": [...]}')
    unknown = set(data) - {"lines", "records"}
    if unknown:
        raise HTTPException(422, f"unknown field(s) {sorted(unknown)}: send 'lines' or 'records'")
    if ("lines" in data) == ("records" in data):
        raise HTTPException(422, "send exactly one of 'lines' and 'records'")
    name = "lines" if "lines" in data else "records"
    entries = data[name]
    if not isinstance(entries, list):
        raise HTTPException(422, f"'{name}' must be a list")
    if not entries:
        raise HTTPException(422, f"empty batch: '{name}' is an empty list")
    if len(entries) > settings.max_lines_per_batch:
        raise _too_many(len(entries), settings)
    if name == "lines" and _all_clean(entries, settings):  # the usual batch: no line needs a closer look
        batch.indexes, batch.messages = list(range(len(entries))), list(entries)
        return batch
    if name == "records":
        batch.records = []
    for i, entry in enumerate(entries):
        if name == "lines":
            if not isinstance(entry, str):
                batch.errors.append(line_error(i, f"a line must be a string, not {type(entry).__name__}"))
                continue
            _add_line(batch, i, entry, settings)
        else:
            try:
                item = read_record(i, entry, settings)
                batch.add(i, item.message)
                batch.records.append(item)
            except ValueError as exc:
                batch.errors.append(line_error(i, str(exc)))
    return batch


# --------------------------------------------------------------------------- storing


def ingest(services: Services, stream: Stream, batch: Batch, key: str | None = None) -> tuple[int, bytes]:
    """Parse, score, store and window a batch; returns (status code, the answer's JSON), once
    committed. Runs in a worker thread. With an idempotency `key`, the answer is stored in the
    same transaction, and a batch whose key is known stores nothing: it gets that answer
    (`Replayed`).

    Chunk by chunk inside one transaction: while a chunk is scored and inserted, the parse
    helper (if any) masks the next one on another core. The lines are kept column by column
    (`Lines`), not as a dict per line: a batch is a thousand of them.
    """
    cfg = stream.config()
    model = services.registry.get(stream)  # ModelsUnavailable -> 503
    train = cfg.train_mode
    now = utcnow()
    n_templates = model.n_templates()
    stream_id = stream.id  # an ORM attribute: read once, not per line
    out = Lines()
    chunks = model.parse_chunks(batch.messages, services.parse_helper)
    with store.write_session(services.engine) as session, closing(chunks):
        if key is not None and (known := store.stored_answer(session, stream_id, key)) is not None:
            raise Replayed(*known)
        parser = model.parser  # its header counts before the batch (ingest holds the write lock: no other batch parses)
        seen, headers = parser.lines_seen, parser.headers_parsed
        budget, deferred = services.settings.inline_embed_texts, False  # new texts this request embeds itself
        for parsed in chunks:
            masked = [p.masked for p in parsed]
            new = len(model.new_texts(masked))
            inline = new <= budget
            budget -= new if inline else 0
            deferred = deferred or not inline
            if train:
                model.learn_normal(masked, defer=not inline)
                verdicts = None
            else:
                verdicts = model.score(parsed, embed=inline)
            if model.n_templates() != n_templates:  # new template ids: on disk before the lines that carry them
                services.registry.save_parser(stream_id)
                n_templates = model.n_templates()
            done = len(out.ids)
            columns = _columns(parsed, verdicts, None if batch.records is None else batch.records[done : done + len(parsed)])
            out.add(store.insert_lines(session, stream_id, now, columns), columns)
        if train:
            services.registry.mark_dirty(stream_id)
        warnings = []
        if model.parser is parser and parser.lines_seen - seen == len(out.ids):  # counts of this batch alone
            warning = header_warning(cfg, parser.layout, len(out.ids), parser.headers_parsed - headers)
            if warning:
                warnings.append(warning)
        slots = list(map(windows.LineSlot, out.ids, out.timestamps, out.sessions))
        queued = windows.assign(session, stream_id, cfg, slots, now)
        in_window = _lines_in_windows(cfg, slots)
        if not train:
            anomalies = [
                {"stream_id": stream_id, "line_id": line_id, "window_id": None, "template_id": tid,
                 "kind": "line", "severity": severity, "status": "open",
                 "reasons": {"rapid_score": score, "rapid_threshold": model.rapid_threshold},
                 "created_at": now, "updated_at": now}
                for line_id, tid, score, flag, severity in zip(out.ids, out.template_ids, out.scores, out.flags,
                                                               out.severities) if flag
            ]
            store.route_anomalies(session, stream_id, anomalies, now, services.settings.incident_gap_seconds)
            store.insert_anomalies(session, anomalies)
        # The answer is built while the commit below waits for the disk (it lets go of the GIL
        # meanwhile), and sent only once the commit has returned.
        answer = _ANSWERS.submit(_answer, model, stream.name, train, batch, out, in_window, len(queued), warnings)
        if key is not None:  # a keyed batch's answer commits with its lines
            content, _ = answer.result()
            store.save_answer(session, stream_id, key, 207 if batch.errors else 200, content, now)

    content, severities = answer.result()
    m = services.metrics
    m.lines_ingested.labels(stream.name).inc(len(out.ids))
    for severity, n in severities.items():
        if severity != "pending":  # counted by the encoder once final
            m.verdicts.labels(stream.name, severity).inc(n)
    if deferred and services.encoder is not None:
        services.encoder.wake()
    if queued and services.worker is not None:
        services.worker.wake()
    return (207 if batch.errors else 200), content


class Replayed(Exception):
    """A batch whose Idempotency-Key was seen: its first answer, nothing stored again."""

    def __init__(self, status: int, content: bytes):
        super().__init__("replayed")
        self.status, self.content = status, content


_SEVERITY = {flag: combine(flag, False) for flag in (False, True)}  # before LogGPT has checked the line
_SEVERITY[None] = "pending"  # a new text left to the background encoder (`server.encoder`)


def _columns(parsed: list, verdicts: list | None, records: list[Item] | None) -> dict[str, list]:
    """The log_lines columns of a chunk: its ParsedLines, their RAPID verdicts (None: train mode),
    their records if the body had records (their own timestamp, sessions and attributes win)."""
    fields = dict(zip(ParsedLine._fields, zip(*parsed)))  # each field of the chunk's lines, as a tuple
    timestamps = [t if t is None or 0 <= t <= LATEST_TS else None for t in fields["timestamp"]]  # NaN fails too
    sessions = list(fields["sessions"])
    n = len(parsed)
    attributes = [None] * n
    for k, it in enumerate(records or ()):
        if it.timestamp is not None:  # finite: `_timestamp` checked it
            timestamps[k] = it.timestamp
        if it.sessions is not None:
            sessions[k] = it.sessions
        attributes[k] = it.attributes
    if verdicts is None:
        scores = flags = [None] * n
        severities = ["train"] * n
    else:
        scores = [v.score for v in verdicts]
        flags = [v.flag for v in verdicts]
        severities = [_SEVERITY[f] for f in flags]  # None: pending, the background encoder decides
    return {"timestamp": timestamps, "level": [lv[:16] if lv else None for lv in fields["level"]],
            "raw": list(fields["raw"]), "masked": list(fields["masked"]), "template_id": list(fields["template_id"]),
            "sessions": sessions,
            "attributes": attributes, "rapid_score": scores, "rapid_flag": flags, "severity": severities}


class Lines:
    """The stored lines of a batch so far, column by column: what windows and the answer read."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.timestamps: list[float | None] = []
        self.sessions: list = []
        self.template_ids: list[int | None] = []
        self.scores: list[float | None] = []
        self.flags: list[bool | None] = []
        self.severities: list[str] = []

    def add(self, ids: list[int], columns: dict[str, list]) -> None:
        self.ids += ids
        self.timestamps += columns["timestamp"]
        self.sessions += columns["sessions"]
        self.template_ids += columns["template_id"]
        self.scores += columns["rapid_score"]
        self.flags += columns["rapid_flag"]
        self.severities += columns["severity"]


# One thread builds answers: it runs while the request's thread is in the commit's fsync, which
# holds no GIL (~3 ms of Python per 1,000 lines, off a ~6 ms commit). A thread started per
# batch would not do: starting one waits for the GIL, and so would the commit behind it.
_ANSWERS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="logsense-answer")


def header_warning(cfg: Any, layout: str, lines: int, parsed: int) -> str | None:
    """The ingest answer's warning when under `LOW_HEADER_PARSE_RATE` of a batch's `lines` had
    a header the stream's format (`cfg`: its settings; `layout`: the preset in use) could read."""
    if not lines or parsed >= LOW_HEADER_PARSE_RATE * lines:
        return None
    if cfg.format == "generic" and not cfg.format_regex:  # chosen for lines without a header layout: no news
        return None
    fmt = "format_regex" if cfg.format_regex else f"format {cfg.format!r}"
    if not cfg.format_regex and layout != cfg.format:
        fmt += f" (layout {layout!r})"
    return (f"{lines - parsed} of {lines} lines did not match the stream's header {fmt}: their timestamp, level "
            "and component were not read (the header is mined as part of the message); check the stream's format "
            "or format_regex")


def _answer(model: Any, stream_name: str, train: bool, batch: Batch, out: Lines, in_window: list[bool],
            queued: int, warnings: list[str] = ()) -> tuple[bytes, Counter]:
    """The answer's JSON, and the lines per severity (for the metrics, counted once committed)."""
    texts = {tid: model.template(tid) for tid in set(out.template_ids)}
    lines = [
        {"index": index, "id": line_id, "template_id": tid, "template": texts[tid],
         "rapid_score": None if score is None else round(score, 6), "rapid_flag": flag, "severity": severity,
         "pending": (not train) and (pending or severity == "pending")}
        for index, line_id, tid, score, flag, severity, pending in zip(
            batch.indexes, out.ids, out.template_ids, out.scores, out.flags, out.severities, in_window)
    ]
    answer = {"stream": stream_name, "train_mode": train, "accepted": len(out.ids), "rejected": len(batch.errors),
              "queued_windows": queued, "lines": lines, "errors": batch.errors, "warnings": list(warnings)}
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), Counter(out.severities)


def _lines_in_windows(cfg: Any, slots: list) -> list[bool]:
    """Does each line sit in a window (and so get a LogGPT check)?"""
    if cfg.session_regex is None:
        return [True] * len(slots)
    return [bool(s.sessions) for s in slots]


_RECORD_SCHEMA = {
    "type": "object", "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "timestamp": {"oneOf": [{"type": "number"}, {"type": "string"}]},
        "session": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "attributes": {"type": "object"},
    },
}
_LINES_SCHEMA = {"type": "object", "required": ["lines"],
                 "properties": {"lines": {"type": "array", "items": {"type": "string"}}}}
_RECORDS_SCHEMA = {"type": "object", "required": ["records"],
                   "properties": {"records": {"type": "array", "items": _RECORD_SCHEMA}}}


@router.post(
    "/{name}/logs",
    response_model=IngestOut,
    status_code=200,
    responses={
        207: {"model": IngestOut, "description": "some lines stored, the others listed in `errors` by index"},
        400: {"description": "malformed JSON"},
        404: {"description": "no such stream"},
        413: {"description": "over max_lines_per_batch or max_request_bytes"},
        415: {"description": "neither JSON nor text/plain"},
        422: {"description": "nothing storable in the body; `errors` says why per line"},
        503: {"description": "detection models still loading"},
    },
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [_LINES_SCHEMA, _RECORDS_SCHEMA]}},
        "text/plain": {"schema": {"type": "string"}, "example": "line one\nline two\n"},
    }}},
)
async def post_logs(name: str, request: Request, key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=1, max_length=255,
        description="a retry with the same key gets the first attempt's answer; nothing is stored twice (kept a day)")] = None,
) -> Response:
    """Store a batch of log lines; each line's verdict so far comes back in the same answer.

    The `Server-Timing` header says where the time went: `read` (body and checks), `store`
    (parse, score, insert, windows, commit, and the answer's JSON, built during the commit) and
    `total`, in milliseconds.
    """
    start = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings

    def lookup() -> Stream:
        with Session(state.engine) as session:
            return get_stream(name, session)

    stream = await run_in_threadpool(lookup)  # 404 before reading a large body
    if key is not None and not key.isprintable():
        raise HTTPException(400, "Idempotency-Key must be printable characters")
    body = await request.body()
    batch = parse_body(body, request.headers.get("content-type", ""), settings)
    if not batch.messages:
        return JSONResponse({"detail": "no line could be stored", "errors": batch.errors,
                             "message": "; ".join(f"{e['index']}: {e['error']}" for e in batch.errors[:10])},
                            status_code=422)
    read = time.perf_counter()
    replayed = {}
    try:
        status, content = await run_in_threadpool(ingest, request.app.state.services, stream, batch, key)
    except ModelsUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from None
    except Replayed as again:
        status, content, replayed = again.status, again.content, {"Idempotent-Replayed": "true"}
    stored = time.perf_counter()
    timing = (f"read;dur={(read - start) * 1000:.1f}, store;dur={(stored - read) * 1000:.1f}, "
              f"total;dur={(time.perf_counter() - start) * 1000:.1f}")
    return Response(content, status_code=status, media_type="application/json",
                    headers={"Server-Timing": timing, **replayed})
