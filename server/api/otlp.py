"""`POST /v1/logs`: OTLP/HTTP logs, so the OpenTelemetry Collector (`otlphttp` exporter) and the
OpenTelemetry SDKs can ship to LogSense.

Bodies: `application/x-protobuf` (an `ExportLogsServiceRequest`, decoded by the
`opentelemetry-proto` package's generated classes) or `application/json` (OTLP's JSON mapping:
lowerCamelCase or snake_case names, `traceId`/`spanId` as hex strings, int64 as strings or
numbers, enums as numbers; unknown fields ignored), either with `Content-Encoding: gzip`.

The resource attribute `service.name` names the stream (created in train mode when unknown and
`push_create_streams` is on, else refused). A log record becomes one line: its body (a string;
any other value as JSON text), its `timeUnixNano` (else `observedTimeUnixNano`) as the timestamp,
and as `attributes` the resource's attributes (but `service.name`), the record's attributes,
`level` (`severityText`, else the name of `severityNumber`'s range), `trace_id` and `span_id`
(hex) and `otel.scope.name`. The key: `X-API-Key` or `Authorization: Bearer KEY` (`ingest` scope).

Answers as the OTLP spec says: 200 with an `ExportLogsServiceResponse` in the request's encoding;
when some records were refused, the others are stored and its `partialSuccess` says how many
(`rejectedLogRecords`) and why (`errorMessage`). When none could be, or the body cannot be read:
a 4xx (400 malformed, 404 unknown streams, 413, 415, 422 nothing storable) or a retryable 503,
with a `google.rpc.Status` body (protobuf, or JSON `{"code", "message"}`).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from logsense.server.api.deps import PushKey
from logsense.server.api.responses import push_responses
from logsense.server.push import Entry, Push, check_stream_name, json_safe, load_json, media_type, read_body, store_push
from logsense.server.settings import Settings

router = APIRouter(prefix="/v1", tags=["push"])

SERVICE_NAME = "service.name"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# severityNumber ranges (1-4 TRACE, 5-8 DEBUG, ...) as the level when severityText is empty
_SEVERITY_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# google.rpc.Code of an HTTP status, for the Status body of a refused request
_RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 422: 3, 429: 8, 503: 14}


# --------------------------------------------------------------------------- values


def any_value(value: Any) -> Any:
    """An `AnyValue` as plain JSON-able Python (bytes as base64)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def key_values(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _level(record: Any) -> str | None:
    if record.severity_text:
        return record.severity_text
    number = record.severity_number
    return _SEVERITY_NAMES[(number - 1) // 4] if 1 <= number <= 24 else None


def _message(body: Any) -> Any:
    value = any_value(body) if body.WhichOneof("value") is not None else ""
    if isinstance(value, str):
        return value
    return orjson.dumps(json_safe(value)).decode("utf-8")


def request_push(request_message: ExportLogsServiceRequest, push: Push) -> None:
    """The log records of an `ExportLogsServiceRequest` as entries by stream (`service.name`)."""
    for resource_logs in request_message.resource_logs:
        resource = key_values(resource_logs.resource.attributes)
        name = resource.pop(SERVICE_NAME, None)
        records = [(scope_logs.scope.name, record) for scope_logs in resource_logs.scope_logs
                   for record in scope_logs.log_records]
        problem = (f"no {SERVICE_NAME!r} resource attribute (a string) to choose the stream"
                   if not isinstance(name, str) or not name else check_stream_name(name))
        if problem:
            push.count(len(records))
            push.refuse(len(records), problem)
            continue
        for scope, record in records:
            index = push.count()
            attributes = {**resource, **key_values(record.attributes)}
            level = _level(record)
            if level:
                attributes["level"] = level
            if record.trace_id:
                attributes["trace_id"] = record.trace_id.hex()
            if record.span_id:
                attributes["span_id"] = record.span_id.hex()
            if scope:
                attributes["otel.scope.name"] = scope
            ts = record.time_unix_nano or record.observed_time_unix_nano or None
            push.add(name, Entry(index, _message(record.body), ts, json_safe(attributes) if attributes else None))


def _hex_ids_to_base64(data: Any) -> None:
    """OTLP JSON writes trace and span ids as hex; protobuf's JSON reader wants base64 for bytes."""
    if not isinstance(data, dict):
        return
    for resource_logs in _list(data, "resourceLogs", "resource_logs"):
        for scope_logs in _list(resource_logs, "scopeLogs", "scope_logs"):
            for record in _list(scope_logs, "logRecords", "log_records"):
                for field in ("traceId", "trace_id", "spanId", "span_id"):
                    value = record.get(field)
                    if isinstance(value, str):
                        try:
                            record[field] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                        except ValueError:
                            raise HTTPException(400, f"{field} {value[:40]!r} is not hex") from None


def _list(obj: Any, *names: str) -> list:
    if not isinstance(obj, dict):
        return []
    for name in names:
        value = obj.get(name)
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict)]
    return []


def parse_request(body: bytes, media: str) -> ExportLogsServiceRequest:
    """The request message from a protobuf or OTLP JSON body; 400 when it is not one."""
    message = ExportLogsServiceRequest()
    if media == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise HTTPException(400, f"malformed protobuf ExportLogsServiceRequest: {exc}") from None
        return message
    data = load_json(body)
    if not isinstance(data, dict):
        raise HTTPException(400, 'the body must be a JSON ExportLogsServiceRequest: {"resourceLogs": [...]}')
    _hex_ids_to_base64(data)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError, ValueError, TypeError) as exc:
        raise HTTPException(400, f"malformed OTLP JSON: {str(exc)[:300]}") from None
    return message


# --------------------------------------------------------------------------- answers


def _answer(message: Any, media: str, status: int = 200) -> Response:
    if media == PROTOBUF:
        return Response(message.SerializeToString(), status_code=status, media_type=PROTOBUF)
    return Response(json_format.MessageToJson(message, indent=None).encode("utf-8"), status_code=status,
                    media_type=JSON)


def _status_body(code: int, message: str, media: str, headers: dict | None = None) -> Response:
    """A `google.rpc.Status` (code 1, message 2), encoded by hand: no googleapis-common-protos needed."""
    rpc = _RPC_CODES.get(code, 2)  # 2: UNKNOWN
    if media == PROTOBUF:
        text = message.encode("utf-8")
        body = bytes([0x08, rpc, 0x12]) + _varint(len(text)) + text
    else:
        body = orjson.dumps({"code": rpc, "message": message})
    return Response(body, status_code=code, media_type=media, headers=headers)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@router.post(
    "/logs",
    status_code=200,
    responses=push_responses("record", "records", {
        200: "stored; `partialSuccess` says how many records were refused and why",
        400: "malformed protobuf, JSON or gzip",
        401: "missing, invalid or revoked API key (X-API-Key or Bearer)",
        415: "neither application/x-protobuf nor application/json, or an unsupported Content-Encoding",
        422: "no record storable",
    }),
    openapi_extra={"requestBody": {"required": True, "content": {
        PROTOBUF: {"schema": {"type": "string", "format": "binary", "description": "ExportLogsServiceRequest"}},
        JSON: {"schema": {"type": "object"}, "example": {"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
            "scopeLogs": [{"logRecords": [{"timeUnixNano": "1733040000000000000", "severityText": "ERROR",
                                           "body": {"stringValue": "payment gateway timeout"}}]}]}]}},
    }}},
)
async def otlp_logs(request: Request, key: PushKey) -> Response:
    """OTLP/HTTP logs: the OpenTelemetry Collector and SDKs export here."""
    settings: Settings = request.app.state.settings
    media = media_type(request)
    answer_media = PROTOBUF if media == PROTOBUF else JSON
    try:
        if media != PROTOBUF and media != JSON:
            raise HTTPException(415, f"unsupported content type {media!r}: send {PROTOBUF} or {JSON}")
        message = parse_request(await read_body(request, settings), media)
        push = Push()
        request_push(message, push)
        await store_push(request, push, key)
    except HTTPException as exc:
        return _status_body(exc.status_code, str(exc.detail), answer_media, exc.headers)
    if push.rejected and not push.accepted:
        status = push.refused_status()
        return _status_body(status, push.summary(), answer_media, {"Retry-After": "10"} if status == 503 else None)
    response = ExportLogsServiceResponse()
    if push.rejected:
        response.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=push.rejected, error_message=push.summary()))
    return _answer(response, answer_media)
