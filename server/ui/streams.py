"""`/streams`: create streams and edit their settings, switch train mode, "Retrain now"; how well
each stream's header format parses its lines (a warning when most do not).

Creating and updating call `server.streams.create` and `update_settings`, as the streams API
does (the same checks, conflicts and validation); training calls
`server.training.start_training`, as `POST /api/v1/streams/{name}/train` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from logsense.server import reports, store, streams
from logsense.server.api.streams import StreamCreate
from logsense.server.tables import Job, Stream, StreamSettings
from logsense.server.training import MODES, start_training
from logsense.server.ui.core import (AdminDep, CsrfDep, OperateDep, OperatorDep, UiError, fragment, is_htmx, redirect,
                                     render, stream_named)

router = APIRouter()


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: str  # text / number / select / checkbox / json
    help: str
    choices: tuple[str, ...] = ()
    step: str = "any"


def _form_fields() -> tuple[FormField, ...]:
    """The settings form, generated from the schema (`models.settings.StreamSettings`): each field's
    title and description, its widget from `json_schema_extra` or its type."""
    out = []
    for name, info in StreamSettings.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        annotation = str(info.annotation)
        choices = tuple(get_args(info.annotation))
        if extra.get("form"):
            kind = extra["form"]
        elif info.annotation is bool:
            kind = "checkbox"
        elif choices and all(isinstance(c, str) for c in choices):
            kind = "select"
        elif "float" in annotation or "int" in annotation:
            kind = "number"
        else:
            kind = "text"
        out.append(FormField(name, info.title or name, kind, info.description or "",
                             choices if kind == "select" else (), str(extra.get("step", "any"))))
    return tuple(out)


FIELDS = _form_fields()


def _values(cfg: StreamSettings) -> dict[str, str]:
    """Settings as the form shows them (strings; JSON fields pretty-printed; None as empty)."""
    data = cfg.model_dump(mode="json")
    out = {}
    for f in FIELDS:
        v = data.get(f.name)
        if f.kind == "json":
            out[f.name] = "" if v in (None, {}) else json.dumps(v)
        elif f.kind == "checkbox":
            out[f.name] = "on" if v else ""
        else:
            out[f.name] = "" if v is None else str(v)
    return out


def _parse_form(form: Any) -> tuple[dict, dict[str, str], dict[str, str]]:
    """(settings dict, the values as typed, errors by field) from a submitted form."""
    settings, typed, errors = {}, {}, {}
    for f in FIELDS:
        if f.kind == "checkbox":
            values = form.getlist(f.name)
            settings[f.name] = bool(values) and values[-1] in ("on", "true", "1")
            typed[f.name] = "on" if settings[f.name] else ""
            continue
        raw = str(form.get(f.name) or "").strip()
        typed[f.name] = raw
        if f.kind == "json":
            if not raw:
                settings[f.name] = {} if f.name == "loggpt_config" else None
                continue
            try:
                settings[f.name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                errors[f.name] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            continue
        settings[f.name] = raw or None
    for name in ("rapid_k", "rapid_target_fpr", "loggpt_target_fpr", "idle_timeout_seconds", "format"):
        if settings.get(name) is None:  # required: empty means the default
            settings.pop(name, None)
    return settings, typed, errors


def _validation_errors(errors: list[dict], strip: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())][strip:]
        key = loc[0] if loc and loc[0] in {f.name for f in FIELDS} else "_form"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out[key] = f"{out[key]}; {msg}" if key in out else msg
    return out


def _parsing(request: Request, stream: Stream) -> dict:
    """How the stream's header format fits its lines, from its loaded model (`streams.header_report`):
    `rate` (None: no line since the model was loaded, or no model), `layout`, `lines` seen, `low` (warn)."""
    model = request.app.state.services.registry.peek(stream.id)
    rate, layout = streams.header_report(model)
    cfg = stream.config()
    return {"rate": rate, "layout": layout, "lines": getattr(getattr(model, "parser", None), "lines_seen", 0),
            "low": rate is not None and rate < streams.LOW_HEADER_PARSE_RATE, "loaded": model is not None,
            "format": cfg.format, "format_regex": cfg.format_regex}


def _rows(request: Request) -> list[dict]:
    with Session(request.app.state.engine) as db:
        counts = store.line_totals(db)
        rows = []
        for s in streams.all_streams(db):
            job = reports.last_job(db, s.id)
            cfg = s.config()
            grouping = (f"sessions by {cfg.session_regex}" if cfg.session_regex else
                        " + ".join(x for x in (f"{cfg.window_size} lines" if cfg.window_size else "",
                                               f"{cfg.window_seconds:g} s" if cfg.window_seconds else "") if x))
            rows.append({"stream": s, "cfg": cfg, "lines": counts.get(s.id, 0), "job": job, "grouping": grouping,
                         "parsing": _parsing(request, s)})
    return rows


@router.get("/streams")
def list_streams(request: Request, op: OperatorDep) -> Response:
    return render(request, "streams/list.html", {"section": "streams", "rows": _rows(request)},
                  partial="streams/table.html")


@router.get("/streams/new")
def new_stream(request: Request, op: AdminDep) -> Response:
    return render(request, "streams/form.html", {
        "section": "streams", "stream": None, "fields": FIELDS, "values": _values(StreamSettings()),
        "errors": {}, "name": "", "saved": False})


@router.post("/streams", dependencies=[CsrfDep])
async def create(request: Request, op: AdminDep) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()
    settings, typed, errors = _parse_form(form)
    body = None
    if not errors:
        try:
            body = StreamCreate(name=name, settings=settings)
        except ValidationError as exc:
            errs = exc.errors(include_url=False)
            errors = _validation_errors([e for e in errs if tuple(e.get("loc", ()))[:1] == ("settings",)], 1)
            if any(tuple(e.get("loc", ()))[:1] == ("name",) for e in errs):
                errors["name"] = "letters, digits, _ . - only; 1 to 64 characters"

    if body is not None:
        def save() -> None:
            with Session(request.app.state.engine) as db:
                streams.create(db, body.name, body.settings)

        try:
            await run_in_threadpool(save)
        except streams.StreamExists as exc:
            errors = {"name": str(exc)}
    if errors:
        return render(request, "streams/form.html", {
            "section": "streams", "stream": None, "fields": FIELDS, "values": typed, "errors": errors,
            "name": name, "saved": False}, status=422)
    return redirect(f"/streams/{name}?created=1", request)


@router.get("/streams/{name}")
def edit_stream(name: str, request: Request, op: OperatorDep, created: str = "") -> Response:
    stream = stream_named(request, name)
    return render(request, "streams/form.html", {
        "section": "streams", "stream": stream, "fields": FIELDS, "values": _values(stream.config()),
        "errors": {}, "name": stream.name, "saved": bool(created), "job": _last_job(request, stream),
        "parsing": _parsing(request, stream)})


def _update(request: Request, stream: Stream, settings: dict) -> Stream:
    with Session(request.app.state.engine) as db:
        row = streams.update_settings(db, db.get(Stream, stream.id), settings)
        db.expunge(row)
        return row


@router.post("/streams/{name}", dependencies=[CsrfDep])
async def update(name: str, request: Request, op: AdminDep) -> Response:
    stream = await run_in_threadpool(stream_named, request, name)
    form = await request.form()
    settings, typed, errors = _parse_form(form)
    if not errors:
        try:
            stream = await run_in_threadpool(_update, request, stream, settings)
        except ValidationError as exc:
            errors = _validation_errors(exc.errors(include_url=False), 0)  # loc: the field
    ctx = {"section": "streams", "stream": stream, "fields": FIELDS, "errors": errors, "name": stream.name,
           "values": typed if errors else _values(stream.config()), "saved": not errors,
           "job": await run_in_threadpool(_last_job, request, stream), "parsing": _parsing(request, stream)}
    return render(request, "streams/form.html", ctx, status=422 if errors else 200)


@router.post("/streams/{name}/train-mode", dependencies=[CsrfDep])
async def train_mode(name: str, request: Request, op: AdminDep) -> Response:
    """The train mode switch: `train_mode` on/off; answers the switch (or the streams page)."""
    stream = await run_in_threadpool(stream_named, request, name)
    form = await request.form()
    value = str(form.get("train_mode") or "")
    if value not in ("on", "off"):
        raise UiError(400, "train_mode must be 'on' or 'off'")
    stream = await run_in_threadpool(_update, request, stream, {"train_mode": value == "on"})
    if not is_htmx(request):
        return redirect("/streams")
    return fragment(request, "streams/switch.html", {"stream": stream, "cfg": stream.config(), "changed": True})


def _last_job(request: Request, stream: Stream) -> Job | None:
    with Session(request.app.state.engine) as db:
        return reports.last_job(db, stream.id)


@router.post("/streams/{name}/train", dependencies=[CsrfDep])
async def retrain(name: str, request: Request, op: OperateDep) -> Response:
    """"Retrain now": a training job (`mode` train or nightly); answers its progress bar."""
    stream = await run_in_threadpool(stream_named, request, name)
    form = await request.form()
    mode = str(form.get("mode") or "train")
    if mode not in MODES:
        raise UiError(400, f"mode must be one of {', '.join(MODES)}")
    job_id = await run_in_threadpool(start_training, request.app.state.services, stream.id, mode)
    if not is_htmx(request):
        return redirect(f"/jobs?highlight={job_id}")

    def load() -> Job | None:
        with Session(request.app.state.engine) as db:
            return db.get(Job, job_id)

    return fragment(request, "jobs/progress.html", {"job": await run_in_threadpool(load), "stream_name": stream.name})
