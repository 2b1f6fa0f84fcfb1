"""Store a batch: parse, score, insert, window, and answer each line's verdict so far.

Every accepted line is parsed, scored by RAPID, stored and put into its windows in one
transaction (a request embeds at most `inline_embed_texts` new masked texts itself; past that
their lines answer `pending` and `server.encoder` scores them in the background), committed
(SQLite: WAL, synchronous=FULL) before the answer is sent: status 200 when all lines were stored,
207 when some were refused (`Batch.errors`).

In a cluster (`server.cluster`), `ingest` on an API replica hands the batch to the stream's
owner over the broker and returns the owner's answer; the owner runs `store_batch`, fenced by
its partition lease so that a deposed owner cannot commit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import closing
from typing import Any

import orjson

from logsense.models.policy import combine
from logsense.models.parsing import ParsedLine
from logsense.server import store, windows
from logsense.server.batch import LATEST_TS, Batch, Item
from logsense.server.services import Services
from logsense.server.streams import LOW_HEADER_PARSE_RATE
from logsense.server.tables import Stream, utcnow

# --------------------------------------------------------------------------- storing


def ingest(services: Services, stream: Stream, batch: Batch, key: str | None = None) -> tuple[int, bytes]:
    """Store a batch here (`store_batch`), or, on an API replica of a cluster, through its
    stream's owner: (status code, the answer's JSON), once committed. Replayed for a known key."""
    if services.broker is not None:
        status, content, replayed = services.broker.submit(stream.id, batch, key)
        if replayed:
            raise Replayed(status, content)
        return status, content
    return store_batch(services, stream, batch, key)


def store_batch(services: Services, stream: Stream, batch: Batch, key: str | None = None,
                fence: Callable[[Any], None] | None = None) -> tuple[int, bytes]:
    """Parse, score, store and window a batch; returns (status code, the answer's JSON), once
    committed. Runs in a worker thread. With an idempotency `key`, the answer is stored in the
    same transaction, and a batch whose key is known stores nothing: it gets that answer
    (`Replayed`). `fence(session)` (a cluster's owner) runs first in the transaction and raises
    when this process may no longer store the stream's batches.

    Chunk by chunk inside one transaction: while a chunk is scored and inserted, the parse
    helper (if any) masks the next one on another core. The lines are kept column by column
    (`Lines`), not as a dict per line: a batch is a thousand of them.
    """
    cfg = stream.config()
    model = services.registry.get(stream)  # ModelsUnavailable -> 503
    train = cfg.train_mode
    now = utcnow()
    n_templates = first_templates = model.n_templates()
    in_database = services.settings.cluster  # the parser's templates commit with the batch, not to a file
    stream_id = stream.id  # an ORM attribute: read once, not per line
    out = Lines()
    chunks = model.parse_chunks(batch.messages, services.parse_helper)
    with store.write_session(services.engine) as session, closing(chunks):
        if fence is not None:
            fence(session)
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
            if not in_database and model.n_templates() != n_templates:  # new template ids: on disk before the lines that carry them
                services.registry.save_parser(stream_id)
                n_templates = model.n_templates()
            done = len(out.ids)
            columns = _columns(parsed, verdicts, None if batch.records is None else batch.records[done : done + len(parsed)])
            out.add(store.insert_lines(session, stream_id, now, columns), columns)
        if in_database and model.n_templates() != first_templates:
            store.save_templates(session, stream_id, model.n_templates(), model.templates_state(), now)
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
        answer = services.answers.submit(_answer, model, stream.name, train, batch, out, in_window, len(queued), warnings)
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
