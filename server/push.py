"""What the push front doors share: log shippers' own protocols onto the ingest path.

`/loki/api/v1/push` (`server/api/loki.py`) and OTLP/HTTP `/v1/logs` (`server/api/otlp.py`) decode
their bodies into a `Push`: entries (message, timestamp in ns, attributes) grouped by the name of
the stream they go to, and the entries refused while decoding. `store_push` then resolves each
stream by name (creating an unknown one in train mode with the default settings when
`push_create_streams` is on), checks the key's stream limit, turns each stream's entries into a
records `Batch` (the same checks as the records body of `POST /api/v1/streams/{name}/logs`) and
runs `ingest()` once per stream in a worker thread: same durability (committed before the answer),
limits and per-line errors. Good entries of a partly bad push are stored; the caller answers as
its protocol wants from the `Push`'s counts and reasons.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from logsense.server.batch import Batch, line_error, loads_strictly, read_record
from logsense.server.ingest import Replayed, ingest
from logsense.server.api.streams import NAME_PATTERN
from logsense.server.auth import authorize_stream
from logsense.server.registry import ModelsUnavailable
from logsense.server.services import Services
from logsense.server.settings import Settings
from logsense.server.tables import ApiKey, Stream, StreamSettings

_NAME = re.compile(NAME_PATTERN)
MAX_REASONS = 10  # reasons named in an answer; the counts say how many there were


@dataclass
class Entry:
    """One pushed log line, before the ingest checks."""

    index: int  # its position in the push, counted over all its streams (for the reasons)
    message: Any  # a str, or anything else (refused by the checks)
    timestamp_ns: int | None = None  # nanoseconds since the epoch; None or 0: none (the header's, if any)
    attributes: dict | None = None


@dataclass
class Push:
    """A decoded push: entries by stream name, then what `store_push` stored and refused."""

    groups: dict[str, list[Entry]] = field(default_factory=dict)
    entries: int = 0  # every entry of the push, refused or not
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS
    more_reasons: int = 0  # reasons past those
    statuses: Counter = field(default_factory=Counter)  # the status each rejection would have alone

    def count(self, n: int = 1) -> int:
        """Count `n` more entries of the push; the index of the first."""
        self.entries += n
        return self.entries - n

    def add(self, stream: str, entry: Entry) -> None:
        self.groups.setdefault(stream, []).append(entry)

    def refuse(self, count: int, reason: str, status: int = 422) -> None:
        """`count` entries not stored, for `reason`."""
        if count <= 0:
            return
        self.rejected += count
        self.statuses[status] += count
        if len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)
        else:
            self.more_reasons += 1

    def summary(self) -> str:
        """One line: how many entries were refused and why."""
        more = f"; and {self.more_reasons} more" if self.more_reasons else ""
        return (f"{self.rejected} of {self.entries} entries refused, {self.accepted} stored: "
                + "; ".join(self.reasons) + more)

    def refused_status(self) -> int:
        """The status of a push of which nothing was stored: 404 when every refusal was an unknown
        stream, 503 when models were unavailable, else 422 (nothing storable)."""
        if set(self.statuses) == {404}:
            return 404
        if set(self.statuses) == {503}:
            return 503
        return 422


# --------------------------------------------------------------------------- bodies


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, settings: Settings) -> bytes:
    """The request body, gunzipped when `Content-Encoding: gzip` (at most `max_request_bytes` once
    decompressed: else a 413); a 415 for another encoding."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gunzip(body, settings.max_request_bytes)
    raise HTTPException(415, f"unsupported Content-Encoding {encoding!r}: send gzip or none")


def too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"request body over max_request_bytes ({limit} bytes) once decompressed")


def gunzip(data: bytes, limit: int) -> bytes:
    """gzip members decompressed, never past `limit` bytes (a 413); a 400 for a broken stream."""
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise HTTPException(400, f"the body is not valid gzip ({exc})") from None
        if len(out) > limit:
            raise too_large(limit)
        if not inflater.eof:
            if inflater.unconsumed_tail:  # stopped at the limit with more to come
                raise too_large(limit)
            raise HTTPException(400, "the body is not valid gzip (truncated)")
        rest = inflater.unused_data.lstrip(b"\x00")  # another member may follow (padding: zeros)
    return bytes(out)


def load_json(body: bytes) -> Any:
    """A JSON body (400 saying where when it cannot be read)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:  # orjson refuses some bodies json reads (lone surrogates)
        return loads_strictly(body)


def json_safe(value: Any, depth: int = 0) -> Any:
    """An attribute value every database stores as JSON: NaN and infinities as strings, NUL
    characters and lone surrogates replaced, nesting cut at 32 levels (as text)."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= 32:
        return _clean_text(str(value))
    if isinstance(value, dict):
        return {_clean_text(str(k)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    return _clean_text(str(value))


def _clean_text(text: str) -> str:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


# --------------------------------------------------------------------------- streams and batches


def check_stream_name(name: Any) -> str | None:
    """Why `name` cannot name a stream, or None."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        shown = name[:80] if isinstance(name, str) else name
        return (f"stream name {shown!r} is not allowed (letters, digits, '_', '.', '-'; 1 to 64 characters): "
                "relabel it, or create the stream under such a name")
    return None


def resolve_streams(services: Services, names: list[str], create: bool) -> tuple[dict[str, Stream], dict[str, str]]:
    """The streams named, by name, and the names refused with why: unknown ones are created in
    train mode with the default settings when `create`, else refused. Runs in a worker thread."""
    found: dict[str, Stream] = {}
    unknown: dict[str, str] = {}
    with Session(services.engine, expire_on_commit=False) as session:
        for stream in session.exec(select(Stream).where(Stream.name.in_(names))).all():
            found[stream.name] = stream
        for name in names:
            if name in found:
                continue
            if not create:
                unknown[name] = (f"no stream named {name!r} (push_create_streams is off: create it with "
                                 "POST /api/v1/streams)")
                continue
            stream = Stream(name=name, settings=StreamSettings().model_dump(mode="json"))
            session.add(stream)
            try:
                session.commit()
            except IntegrityError:  # created concurrently since the select above
                session.rollback()
                stream = session.exec(select(Stream).where(Stream.name == name)).one()
            else:
                session.refresh(stream)
            found[name] = stream
    return found, unknown


def make_batch(entries: list[Entry], settings: Settings) -> Batch:
    """A records `Batch` of one stream's entries: each checked as a record of the ingest API
    (empty, over max_line_bytes, NUL, timestamp out of range, attributes too large: an error by
    the entry's index)."""
    batch = Batch(records=[])
    for entry in entries:
        record: dict[str, Any] = {"message": entry.message}
        if entry.attributes:
            record["attributes"] = entry.attributes
        try:
            if entry.timestamp_ns:
                try:
                    record["timestamp"] = entry.timestamp_ns / 1_000_000_000  # seconds: below 1e11, read as such
                except OverflowError:
                    raise ValueError("timestamp is beyond the year 9999") from None
            item = read_record(entry.index, record, settings)
        except ValueError as exc:
            batch.errors.append(line_error(entry.index, str(exc)))
            continue
        batch.add(entry.index, item.message)
        batch.records.append(item)
    return batch


def idempotency_key(request: Request) -> str | None:
    """The request's `Idempotency-Key` (a 400 unless 1 to 255 printable characters), or None."""
    value = request.headers.get("idempotency-key")
    if value is not None and not (0 < len(value) <= 255 and value.isprintable()):
        raise HTTPException(400, "Idempotency-Key must be 1 to 255 printable characters")
    return value


async def store_push(request: Request, push: Push, key: ApiKey | None) -> Push:
    """Store every stream's entries of `push` through `ingest()` (one call per stream, in a worker
    thread); the refusals are counted in `push`. With an `Idempotency-Key`, a stream that already
    stored this push (a client's retry) stores nothing again. Raises for the whole push: 413 over
    `max_lines_per_batch` entries, 403 when the key is limited to other streams, 503 while the
    models load (nothing stored then)."""
    services: Services = request.app.state.services
    settings = services.settings
    if push.entries > settings.max_lines_per_batch:
        raise HTTPException(413, f"push of {push.entries} entries over max_lines_per_batch "
                                 f"({settings.max_lines_per_batch})")
    for name in list(push.groups):
        problem = check_stream_name(name)
        if problem:
            push.refuse(len(push.groups.pop(name)), problem)
    if key is not None:
        for name in push.groups:
            authorize_stream(key, name)
    if not push.groups:
        return push
    reason = services.registry.ready_reason()
    if reason:
        raise HTTPException(503, f"detection models not ready ({reason}); retry shortly", headers={"Retry-After": "10"})
    retry_key = idempotency_key(request)
    streams, unknown = await run_in_threadpool(resolve_streams, services, list(push.groups),
                                               settings.push_create_streams)
    for name, entries in push.groups.items():
        if name in unknown:
            push.refuse(len(entries), unknown[name], 404)
            continue
        batch = make_batch(entries, settings)
        for error in batch.errors:
            push.refuse(1, f"entry {error['index']} ({name}): {error['error']}")
        if not batch.messages:
            continue
        try:
            await run_in_threadpool(ingest, services, streams[name], batch, retry_key)
        except ModelsUnavailable as exc:
            if not push.accepted:
                raise HTTPException(503, str(exc), headers={"Retry-After": "10"}) from None
            push.refuse(len(batch.messages), f"stream {name!r}: {exc}", 503)
            continue
        except Replayed:  # this stream stored the push the first time: answered, not stored again
            pass
        push.accepted += len(batch.messages)
    return push
