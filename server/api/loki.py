"""`POST /loki/api/v1/push`: Loki's push API, so Promtail, Grafana Alloy (`loki.write`) and any
other Loki client can ship to LogSense unchanged.

Bodies, as Loki takes them:
- `application/x-protobuf` (or no `Content-Type`): a block-snappy-compressed (not framed)
  `logproto.PushRequest`, what Promtail and Alloy send. Decoded here by a small protobuf wire
  reader (`PushRequest` / `StreamAdapter` / `EntryAdapter` / `LabelPairAdapter` and
  `google.protobuf.Timestamp`): no generated code.
- `application/json`: `{"streams": [{"stream": {labels}, "values": [["<unix ns>", "line"] or
  ["<unix ns>", "line", {structured metadata}], ...]}]}` (Loki's older `{"labels": "{...}",
  "entries": [{"ts": RFC 3339, "line"}]}` too); `Content-Encoding: gzip` on either.

The stream of an entry is the value of its `loki_stream_label` label (default `service_name`),
else of its `job` label; the other labels and the entry's structured metadata become the line's
`attributes`, the entry's timestamp (ns) its timestamp. Unknown streams are created in train mode
(`push_create_streams`) or refused (404). The key: `X-API-Key`, `Authorization: Bearer KEY` or the
basic-auth password, with the `ingest` scope and, if it is limited to streams, every stream named.

Answers: 204 when every entry was stored (what Loki clients expect); when some were refused, the
good ones are still stored and the answer is a 400 (as Loki does) whose `detail` says how many and
why; when none could be stored a 404 (unknown streams), 422 (nothing storable) or 503. A body that
cannot be read at all: 400 (malformed JSON, protobuf, snappy or gzip), 413 (over
`max_request_bytes`, also once decompressed, or over `max_lines_per_batch` entries), 415.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import cramjam
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from logsense.server.api.deps import PushKey
from logsense.server.api.responses import push_responses
from logsense.server.batch import iso_datetime
from logsense.server.push import Entry, Push, json_safe, load_json, media_type, read_body, store_push, too_large
from logsense.server.settings import Settings

router = APIRouter(prefix="/loki/api/v1", tags=["push"])

FALLBACK_LABEL = "job"


# --------------------------------------------------------------------------- protobuf wire format


class WireError(ValueError):
    """Bytes that are not the protobuf message expected."""


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint over 10 bytes")


def _signed64(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes | memoryview, schema: dict[int, tuple[int, str]]) -> Iterator[tuple[int, Any]]:
    """(field number, value) of each field of one message that `schema` names (number -> (wire
    type, name)), checked to have that wire type: an int for a varint, a memoryview for a
    length-delimited field. Other fields are read past, as protobuf readers do."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise WireError("length-delimited field past the end of its message")
            value, pos = buf[pos : pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise WireError("fixed-size field past the end of its message")
            value, pos = int.from_bytes(buf[pos : pos + size], "little"), pos + size
        else:
            raise WireError(f"unsupported wire type {wire} (field {number})")
        wanted = schema.get(number)
        if wanted is not None:
            if wire != wanted[0]:
                raise WireError(f"{wanted[1]} (field {number}) has wire type {wire}, not {wanted[0]}")
            yield number, value


_TIMESTAMP = {1: (0, "Timestamp.seconds"), 2: (0, "Timestamp.nanos")}
_LABEL_PAIR = {1: (2, "LabelPairAdapter.name/value"), 2: (2, "LabelPairAdapter.name/value")}
_ENTRY = {1: (2, "EntryAdapter.timestamp"), 2: (2, "EntryAdapter.line"), 3: (2, "EntryAdapter.structuredMetadata")}
_STREAM = {1: (2, "StreamAdapter.labels"), 2: (2, "StreamAdapter.entries")}
_PUSH_REQUEST = {1: (2, "PushRequest.streams")}


def _timestamp_ns(buf: memoryview) -> int:
    """A `google.protobuf.Timestamp` in nanoseconds since the epoch."""
    parts = {1: 0, 2: 0}  # seconds, nanos
    for number, value in _fields(buf, _TIMESTAMP):
        parts[number] = _signed64(value)
    return parts[1] * 1_000_000_000 + parts[2]


def _label_pair(buf: memoryview) -> tuple[str, str]:
    texts = {1: "", 2: ""}  # name, value
    for number, value in _fields(buf, _LABEL_PAIR):
        texts[number] = bytes(value).decode("utf-8", "replace")
    return texts[1], texts[2]


def _entry(buf: memoryview) -> tuple[int | None, bytes, list[tuple[str, str]]]:
    """An `EntryAdapter`: (timestamp ns or None, the line's bytes, structured metadata)."""
    ts, line, metadata = None, b"", []
    for number, value in _fields(buf, _ENTRY):
        if number == 1:
            ts = _timestamp_ns(value)
        elif number == 2:
            line = bytes(value)
        else:
            metadata.append(_label_pair(value))
    return ts, line, metadata


def decode_push_request(data: bytes) -> list[tuple[str, list[tuple[int | None, bytes, list[tuple[str, str]]]]]]:
    """A `logproto.PushRequest`: [(labels string, [(timestamp ns, line bytes, structured metadata)])].
    WireError for bytes that are not one."""
    streams = []
    for _, stream in _fields(memoryview(data), _PUSH_REQUEST):
        labels, entries = "", []
        for number, value in _fields(stream, _STREAM):
            if number == 1:
                labels = bytes(value).decode("utf-8", "replace")
            else:
                entries.append(_entry(value))
        streams.append((labels, entries))
    return streams


def snappy_decompress(data: bytes, limit: int) -> bytes:
    """A block-snappy body (what Loki clients send), never over `limit` bytes decompressed (413)."""
    hint = "the body is not block-snappy-compressed protobuf (application/x-protobuf, as Promtail and Alloy send)"
    try:
        size, _ = _varint(data, 0)  # a snappy block starts with its decompressed length
    except WireError:
        raise HTTPException(400, hint) from None
    if size > limit:
        raise too_large(limit)
    try:
        out = bytes(cramjam.snappy.decompress_raw(data))
    except (cramjam.DecompressionError, ValueError) as exc:
        raise HTTPException(400, f"{hint}: {exc}") from None
    if len(out) > limit:
        raise too_large(limit)
    return out


# --------------------------------------------------------------------------- labels


_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)
_SIMPLE_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, "'": 39, '"': 34}


def _unquote(text: str) -> str:
    """A Go double-quoted string's content (what Loki's `labels.String()` writes) unescaped:
    \\n, \\t, \\\\, \\", \\xHH and octal bytes, \\uHHHH, \\UHHHHHHHH."""
    if "\\" not in text:
        return text
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            j = text.find("\\", i)
            j = n if j < 0 else j
            out += text[i:j].encode("utf-8", "replace")
            i = j
            continue
        if i + 1 >= n:
            raise ValueError("a label value ends in a lone backslash")
        code = text[i + 1]
        if code in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[code])
            i += 2
        elif code in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[code]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad \\{code} escape in a label value")
            value = int(digits, 16)
            if code == "x":
                out.append(value)
            else:
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise ValueError(f"\\{code}{digits} is not a Unicode character")
                out += chr(value).encode("utf-8")
            i += 2 + width
        elif code in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                raise ValueError("bad octal escape in a label value")
            out.append(int(digits, 8))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{code} in a label value")
    return out.decode("utf-8", "replace")


def parse_labels(text: str) -> dict[str, str]:
    """Loki's labels string `{a="b", c="d \\"e\\""}` as a dict; ValueError when it is not one."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise ValueError(f"labels {text[:80]!r} are not of the form {{name=\"value\", ...}}")
    labels: dict[str, str] = {}
    pos, end = 1, len(text) - 1
    while pos < end:
        if not text[pos:end].strip():
            break
        match = _LABEL.match(text, pos, end)
        if match is None:
            raise ValueError(f"labels {text[:80]!r} cannot be read at character {pos}")
        labels[match.group(1)] = _unquote(match.group(2))
        pos = match.end()
    return labels


def route(labels: dict[str, Any], settings: Settings) -> tuple[str | None, dict[str, Any]]:
    """(stream name, the other labels) of an entry's labels: the `loki_stream_label` label's
    value, else the `job` label's; (None, labels) when it has neither."""
    chosen = settings.loki_stream_label
    if not labels.get(chosen):
        chosen = FALLBACK_LABEL
    name = labels.get(chosen) or None
    return name, {k: v for k, v in labels.items() if k != chosen}


def _no_stream(settings: Settings, labels: dict) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in list(labels.items())[:8]) or "none"
    return (f"no {settings.loki_stream_label!r} or {FALLBACK_LABEL!r} label to choose the stream "
            f"(labels: {shown})")


# --------------------------------------------------------------------------- bodies to entries


def _protobuf_push(streams: list, settings: Settings, push: Push) -> None:
    for labels_text, entries in streams:
        try:
            labels = parse_labels(labels_text)
        except ValueError as exc:
            push.count(len(entries))
            push.refuse(len(entries), str(exc))
            continue
        _push_stream(labels, entries, _protobuf_entry, settings, push)


def _protobuf_entry(entry: tuple) -> tuple[str, int | None, dict | None]:
    ts, raw, metadata = entry
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"line is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    return line, ts, dict(metadata) if metadata else None


def _push_stream(labels: dict, entries: list, read: Callable[[Any], tuple[str, int | None, dict | None]],
                 settings: Settings, push: Push) -> None:
    """One stream's entries, its labels read, into `push`: `read(entry)` gives (line, timestamp ns,
    structured metadata), or a ValueError that refuses that entry alone."""
    name, common = route(labels, settings)
    if name is None:
        push.count(len(entries))
        push.refuse(len(entries), _no_stream(settings, labels))
        return
    for entry in entries:
        index = push.count()
        try:
            line, ts, metadata = read(entry)
        except ValueError as exc:
            push.refuse(1, f"entry {index} ({name}): {exc}")
            continue
        attributes = {**common, **metadata} if metadata else common
        push.add(name, Entry(index, line, ts, json_safe(attributes) if attributes else None))


def _json_timestamp(value: Any) -> int:
    """A JSON entry's timestamp in ns: unix nanoseconds as a string (Loki's form) or a number, or
    RFC 3339 (the older `entries` form)."""
    if isinstance(value, bool):
        raise ValueError("the timestamp must be unix nanoseconds as a string")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.strip().lstrip("-").isdigit():
            return int(value)
        dt = iso_datetime(value, "neither unix nanoseconds nor RFC 3339")
        delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    raise ValueError("the timestamp must be unix nanoseconds as a string")


def _json_values(stream: dict) -> list:
    """A JSON stream's entries as (timestamp, line, metadata) triples to check."""
    if "values" in stream:
        values = stream["values"]
        if not isinstance(values, list):
            raise ValueError("'values' must be a list of [\"<unix ns>\", \"line\"] pairs")
        out = []
        for value in values:
            if isinstance(value, list) and len(value) in (2, 3):
                out.append((value[0], value[1], value[2] if len(value) == 3 else None))
            else:
                out.append(ValueError('an entry must be ["<unix ns>", "line"] or ["<unix ns>", "line", {metadata}]'))
        return out
    entries = stream.get("entries")
    if not isinstance(entries, list):
        raise ValueError("a stream needs 'values' (a list of [\"<unix ns>\", \"line\"] pairs)")
    return [(e.get("ts", e.get("timestamp")), e.get("line"), None) if isinstance(e, dict)
            else ValueError("an entry must be an object with 'ts' and 'line'") for e in entries]


def _json_push(data: Any, settings: Settings, push: Push) -> None:
    if not isinstance(data, dict) or not isinstance(data.get("streams"), list):
        raise HTTPException(422, 'the body must be {"streams": [{"stream": {labels}, "values": '
                                 '[["<unix ns>", "line"], ...]}, ...]}')
    for k, stream in enumerate(data["streams"]):
        try:
            if not isinstance(stream, dict):
                raise ValueError("a stream must be an object with 'stream' (labels) and 'values'")
            values = _json_values(stream)
            labels = stream.get("stream", stream.get("labels", {}))
            if isinstance(labels, str):
                labels = parse_labels(labels)
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise ValueError("'stream' must be an object of label names and string values")
        except ValueError as exc:
            n = len(stream.get("values") or ()) if isinstance(stream, dict) and isinstance(stream.get("values"), list) else 1
            push.count(max(n, 1))
            push.refuse(max(n, 1), f"streams[{k}]: {exc}")
            continue
        _push_stream(labels, values, _json_entry, settings, push)


def _json_entry(value: Any) -> tuple[str, int, dict | None]:
    if isinstance(value, ValueError):
        raise value
    ts, line, metadata = value
    if not isinstance(line, str):
        raise ValueError("the line must be a string")
    ts_ns = _json_timestamp(ts)
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("structured metadata must be an object of names and values")
    return line, ts_ns, metadata


@router.post(
    "/push",
    status_code=204,
    responses=push_responses("entry", "entries", {
        204: "every entry stored",
        400: "malformed JSON, protobuf, snappy or gzip; or some entries refused (the rest stored): `detail` says how "
             "many and why",
        401: "missing, invalid or revoked API key (X-API-Key, Bearer, or the basic-auth password)",
        415: "neither protobuf nor JSON, or an unsupported Content-Encoding",
        422: "nothing storable, or a JSON body of the wrong shape",
    }),
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary",
                                              "description": "snappy-compressed logproto.PushRequest"}},
        "application/json": {"schema": {"type": "object"}, "example": {"streams": [
            {"stream": {"service_name": "checkout", "env": "prod"},
             "values": [["1733040000000000000", "payment gateway timeout", {"trace_id": "4bf92f35"}]]}]}},
    }}},
)
async def loki_push(request: Request, key: PushKey) -> Response:
    """Loki's push API: Promtail, Alloy and other Loki clients ship here unchanged."""
    settings: Settings = request.app.state.settings
    media = media_type(request)
    body = await read_body(request, settings)
    push = Push()
    if media == "application/json" or media.endswith("+json"):
        _json_push(load_json(body), settings, push)
    elif media in ("application/x-protobuf", "application/protobuf", "application/octet-stream", ""):
        try:
            streams = decode_push_request(snappy_decompress(body, settings.max_request_bytes))
        except WireError as exc:
            raise HTTPException(400, f"malformed protobuf PushRequest: {exc}") from None
        _protobuf_push(streams, settings, push)
    else:
        raise HTTPException(415, f"unsupported content type {media!r}: send application/x-protobuf "
                                 "(snappy) or application/json")
    await store_push(request, push, key)
    if not push.rejected:
        return Response(status_code=204)
    status = 400 if push.accepted else push.refused_status()
    return JSONResponse({"detail": push.summary(), "accepted": push.accepted, "rejected": push.rejected},
                        status_code=status)
