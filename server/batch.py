"""A request's body as a `Batch`: storable lines, each with its position, and the refused ones
by index with the reason. Shared by every way logs come in (the batch API, Loki and OTLP pushes,
syslog) and carried over the broker as it is (`to_message` / `from_message`) in a cluster.

Bodies of `POST /api/v1/streams/{name}/logs`:
- `application/json` `{"lines": ["raw line", ...]}`
- `application/json` `{"records": [{"message": ..., "timestamp": ..., "session": ..., "attributes": {...}}]}`
  (`timestamp`: epoch seconds, milliseconds, microseconds or nanoseconds, or ISO 8601; `session`: a key or a list of keys, used instead of
  the stream's session regex; `attributes`: any JSON object, stored with the line)
- `text/plain`: one line per line (blank lines skipped; an index still counts them).

Over `max_lines_per_batch`: 413 for the whole batch; a line over `max_line_bytes`: an error for that line.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from fastapi import HTTPException

from logsense.server.settings import Settings

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


def iso_datetime(value: str, what: str = "not ISO 8601") -> datetime:
    """An ISO 8601 / RFC 3339 string as an aware datetime (`Z` is UTC; no zone: UTC). ValueError
    saying the string `is {what}` otherwise."""
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {value[:40]!r} is {what}") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def _timestamp(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("timestamp must be epoch seconds or an ISO 8601 string, not a boolean")
    if isinstance(value, (int, float)):
        ts = epoch_seconds(float(value))
    elif isinstance(value, str):
        dt = iso_datetime(value)
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
    """Would `_check_text` pass every entry? Checked in bulk, in C loops, for the usual batch:
    strings, none blank, all ASCII (a byte a character) without NUL, none over max_line_bytes.
    False means: look at each line."""
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


# --------------------------------------------------------------------------- over the broker


def to_message(batch: Batch) -> bytes:
    """The batch as bytes for the broker (`server.cluster.broker`); `from_message` reads it back."""
    return orjson.dumps(asdict(batch))


def from_message(data: bytes) -> Batch:
    raw = orjson.loads(data)
    records = raw.get("records")
    return Batch(indexes=raw["indexes"], messages=raw["messages"], errors=raw["errors"],
                 records=None if records is None else [Item(**r) for r in records])
