"""`/alerts`: the alert channels with their rules and what their outbox holds; add one, enable or
disable it, send it a test alert, delete it (admin); viewers may look.

Every change calls `server.channels` (`create`, `update`, `delete`, `send_test`), as
`/api/v1/alerts/channels` does: the same checks, conflicts and messages.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session

from logsense.server import alerts, channels
from logsense.server.api.deps import RowId
from logsense.server.ui.core import AdminDep, CsrfDep, OperatorDep, UiError, fragment, is_htmx, redirect, render

router = APIRouter()

KINDS = ("webhook", "slack", "alertmanager", "email")
STATES = ("pending", "sending", "sent", "failed")
FORM_FIELDS = ("name", "kind", "url", "secret", "streams", "min_severity", "only_new_incidents", "digest_seconds")
EMPTY_FORM = {"name": "", "kind": "webhook", "url": "", "secret": "", "streams": "", "min_severity": "watch",
              "only_new_incidents": "", "digest_seconds": ""}


def _rows(request: Request) -> list[dict]:
    """Each channel as the API shows it, with its outbox rows counted by state and its latest error."""
    with Session(request.app.state.engine) as db:
        found = channels.listed(db)
        counts, errors = channels.outbox_summary(db)
    return [{"c": c, "counts": counts.get(c.id, {}), "error": errors.get(c.id)} for c in found]


def _ctx(request: Request, **extra: Any) -> dict:
    ctx = {"section": "alerts", "rows": _rows(request), "states": STATES, "kinds": KINDS, "values": EMPTY_FORM,
           "errors": {}, "message": None, "message_kind": "ok"}
    return {**ctx, **extra}


def _answer(request: Request, ctx: dict, status: int = 200) -> Response:
    """The channels' part of the page to an HTMX request; else back to the page (or it, with errors)."""
    if is_htmx(request):
        return fragment(request, "alerts/table.html", ctx, status=status)
    if status >= 400:
        return render(request, "alerts/list.html", ctx, status=status)
    return redirect("/alerts")


@router.get("/alerts")
def list_channels(request: Request, op: OperatorDep) -> Response:
    return render(request, "alerts/list.html", _ctx(request), partial="alerts/table.html")


def _parse(form: Any) -> tuple[dict, dict[str, str]]:
    """(the API's body, the values as typed) from the add form; blanks mean the defaults."""
    typed = {name: str(form.get(name) or "").strip() for name in FORM_FIELDS}
    typed["only_new_incidents"] = "on" if typed["only_new_incidents"] in ("on", "true", "1") else ""
    body: dict[str, Any] = {"name": typed["name"], "kind": typed["kind"], "url": typed["url"],
                            "min_severity": typed["min_severity"] or "watch",
                            "only_new_incidents": bool(typed["only_new_incidents"])}
    if typed["secret"]:
        body["secret"] = typed["secret"]
    streams = [s.strip() for s in typed["streams"].split(",") if s.strip()]
    if streams:
        body["streams"] = streams
    if typed["digest_seconds"]:
        body["digest_seconds"] = typed["digest_seconds"]
    typed["secret"] = ""  # never sent back into the page
    return body, typed


def _field_errors(errors: list[dict]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        key = loc[0] if loc and loc[0] in FORM_FIELDS else "_form"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out[key] = f"{out[key]}; {msg}" if key in out else msg
    return out


@router.post("/alerts", dependencies=[CsrfDep])
async def create(request: Request, op: AdminDep) -> Response:
    body, typed = _parse(await request.form())
    try:
        channel = channels.ChannelIn.model_validate(body)
    except ValidationError as exc:
        errors = _field_errors(exc.errors(include_url=False))
    else:
        try:
            out = await run_in_threadpool(channels.create, request.app.state.services, channel)
        except channels.ChannelExists as exc:
            errors = {"name": str(exc)}
        else:
            ctx = await run_in_threadpool(_ctx, request, message=f"Channel {out.name} added.")
            return _answer(request, ctx)
    ctx = await run_in_threadpool(_ctx, request, values=typed, errors=errors)
    return _answer(request, ctx, status=422)


@router.post("/alerts/{channel_id}/enabled", dependencies=[CsrfDep])
async def switch(channel_id: RowId, request: Request, op: AdminDep) -> Response:
    """Enable (`enabled=on`) or disable (`off`) a channel; a disabled one queues and sends nothing."""
    value = str((await request.form()).get("enabled") or "")
    if value not in ("on", "off"):
        raise UiError(400, "enabled must be 'on' or 'off'")
    out = await run_in_threadpool(_apply, channels.update, request.app.state.services, channel_id,
                                  channels.ChannelPatch(enabled=value == "on"))
    done = "enabled" if out.enabled else "disabled"
    ctx = await run_in_threadpool(_ctx, request, message=f"Channel {out.name} {done}.")
    return _answer(request, ctx)


@router.post("/alerts/{channel_id}/test", dependencies=[CsrfDep])
async def test(channel_id: RowId, request: Request, op: AdminDep) -> Response:
    """Send a test alert now; what the receiver answered, in the page."""
    try:
        code = await run_in_threadpool(_apply, channels.send_test, request.app.state.services, channel_id)
    except alerts.DeliveryError as exc:
        message, kind = f"Test alert not delivered: {exc}", "error"
    else:
        message, kind = f"Test alert delivered (the receiver answered {code}).", "ok"
    ctx = await run_in_threadpool(_ctx, request, message=message, message_kind=kind)
    return _answer(request, ctx)


@router.post("/alerts/{channel_id}/delete", dependencies=[CsrfDep])
async def delete(channel_id: RowId, request: Request, op: AdminDep) -> Response:
    name = await run_in_threadpool(_apply, channels.delete, request.app.state.services, channel_id)
    ctx = await run_in_threadpool(_ctx, request, message=f"Channel {name} deleted, with its queued alerts.")
    return _answer(request, ctx)


def _apply(action: Any, *args: Any) -> Any:
    """A `server.channels` function's answer; what it refuses as the UI's 4xx (a failed delivery
    goes on to the caller)."""
    try:
        return action(*args)
    except channels.NoChannel as exc:
        raise UiError(404, str(exc)) from None
    except channels.ChannelExists as exc:
        raise UiError(409, str(exc)) from None
    except ValidationError as exc:
        raise UiError(422, "; ".join(str(e.get("msg", "")) for e in exc.errors(include_url=False))) from None
