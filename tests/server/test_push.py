"""The log shippers' front doors: Loki's push API (`/loki/api/v1/push`) and OTLP/HTTP logs
(`/v1/logs`), against one real uvicorn server on a free port.

Real clients where there are: the OpenTelemetry Python SDK's `OTLPLogExporter` behind Python
`logging` (skipped when the OTel SDK is not installed); a Loki `PushRequest` built by the
`protobuf` package from Loki's push.proto layout (so the server's hand-written wire reader is
checked against protobuf's own encoder), snappy-compressed by cramjam as Promtail does.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
from collections.abc import Iterator

import cramjam
import httpx
import pytest
from sqlmodel import Session, select

from logsense.server.tables import Stream

from .helpers import LiveServer, live_server, wait_for

NS = 1_000_000_000


class Live(LiveServer):
    """The shared live server, with the stream API's view of a stream."""

    def stream(self, name: str) -> dict:
        r = httpx.get(f"{self.url}/api/v1/streams/{name}", headers={"X-API-Key": self.key}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("push") / "data", "push", cls=Live) as server:
        yield server


@pytest.fixture
def http(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


# --------------------------------------------------------------------------- Loki's PushRequest, by protobuf


def loki_messages():  # noqa: ANN201
    """PushRequest, StreamAdapter, EntryAdapter, LabelPairAdapter classes built by protobuf from
    the message layout of Loki's pkg/push/push.proto (package logproto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    F = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(name="push.proto", package="logproto", syntax="proto3",
                                               dependency=["google/protobuf/timestamp.proto"])

    def message(name: str, *fields: tuple) -> None:
        m = proto.message_type.add(name=name)
        for number, (fname, ftype, label, type_name) in enumerate(fields, start=1):
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    message("PushRequest", ("streams", F.TYPE_MESSAGE, F.LABEL_REPEATED, ".logproto.StreamAdapter"))
    message("StreamAdapter", ("labels", F.TYPE_STRING, F.LABEL_OPTIONAL, None),
            ("entries", F.TYPE_MESSAGE, F.LABEL_REPEATED, ".logproto.EntryAdapter"),
            ("hash", F.TYPE_UINT64, F.LABEL_OPTIONAL, None))
    message("EntryAdapter", ("timestamp", F.TYPE_MESSAGE, F.LABEL_OPTIONAL, ".google.protobuf.Timestamp"),
            ("line", F.TYPE_STRING, F.LABEL_OPTIONAL, None),
            ("structuredMetadata", F.TYPE_MESSAGE, F.LABEL_REPEATED, ".logproto.LabelPairAdapter"))
    message("LabelPairAdapter", ("name", F.TYPE_STRING, F.LABEL_OPTIONAL, None),
            ("value", F.TYPE_STRING, F.LABEL_OPTIONAL, None))
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logproto.{name}"))
            for name in ("PushRequest", "StreamAdapter", "EntryAdapter", "LabelPairAdapter")}


def loki_protobuf(streams: list[tuple[str, list[tuple[int, str, dict]]]]) -> bytes:
    """A snappy-compressed PushRequest of (labels string, [(ts ns, line, structured metadata)])."""
    m = loki_messages()
    request = m["PushRequest"]()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels, hash=12345)
        for ts, line, metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.seconds, entry.timestamp.nanos = divmod(ts, NS)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


PROTOBUF = {"Content-Type": "application/x-protobuf"}


def test_loki_protobuf_push_creates_streams_with_timestamps_labels_and_metadata(live: Live, http: httpx.Client) -> None:
    t0 = 1_733_040_000_123_456_789
    body = loki_protobuf([
        ('{service_name="lk-checkout", env="prod", note="say \\"hi\\"\\n"}', [
            (t0, "payment gateway timeout after 30000 ms for order 1181", {"trace_id": "4bf92f3577b34da6"}),
            (t0 + 1_500_000_000, "retry queue length 412 above soft limit", {}),
        ]),
        ('{job="lk-batch", host="h1"}', [(t0 + 2 * NS, "nightly export finished in 93 s", {})]),  # no service_name: job
    ])
    r = http.post("/loki/api/v1/push", content=body, headers={**PROTOBUF, "X-API-Key": live.key})
    assert r.status_code == 204, r.text

    checkout = live.lines("lk-checkout")
    assert [line.raw for line in checkout] == ["payment gateway timeout after 30000 ms for order 1181",
                                               "retry queue length 412 above soft limit"]
    assert checkout[0].timestamp == pytest.approx(t0 / NS, abs=1e-6)
    assert checkout[1].timestamp == pytest.approx(t0 / NS + 1.5, abs=1e-6)
    assert checkout[0].attributes == {"env": "prod", "note": 'say "hi"\n', "trace_id": "4bf92f3577b34da6"}
    assert checkout[1].attributes == {"env": "prod", "note": 'say "hi"\n'}
    assert all(line.severity == "train" for line in checkout)
    batch = live.lines("lk-batch")
    assert [(b.raw, b.attributes) for b in batch] == [("nightly export finished in 93 s", {"host": "h1"})]
    assert batch[0].timestamp == pytest.approx(t0 / NS + 2, abs=1e-6)
    created = live.stream("lk-checkout")
    assert created["settings"]["train_mode"] is True and created["settings"]["format"] == "auto"


def test_loki_json_gzip_with_the_key_as_basic_auth_password(live: Live, http: httpx.Client) -> None:
    t0 = 1_733_050_000_000_000_000
    payload = {"streams": [{"stream": {"service_name": "lk-json", "region": "eu"},
                            "values": [[str(t0), "user 17 logged in"],
                                       [str(t0 + NS), "user 17 logged out", {"span_id": "00f067aa0ba902b7"}]]}]}
    basic = base64.b64encode(f"loki-user:{live.key}".encode()).decode()
    r = http.post("/loki/api/v1/push", content=gzip.compress(json.dumps(payload).encode()),
                  headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                           "Authorization": f"Basic {basic}"})
    assert r.status_code == 204, r.text
    lines = live.lines("lk-json")
    assert [(x.raw, x.timestamp, x.attributes) for x in lines] == [
        ("user 17 logged in", pytest.approx(t0 / NS), {"region": "eu"}),
        ("user 17 logged out", pytest.approx(t0 / NS + 1), {"region": "eu", "span_id": "00f067aa0ba902b7"}),
    ]
    # Bearer works too
    r = http.post("/loki/api/v1/push", json={"streams": [{"stream": {"service_name": "lk-json"},
                                                         "values": [[str(t0 + 2 * NS), "user 18 logged in"]]}]},
                  headers={"Authorization": f"Bearer {live.key}"})
    assert r.status_code == 204, r.text
    assert len(live.lines("lk-json")) == 3
    # a shipper's retry with the same Idempotency-Key stores nothing again
    retry = {"streams": [{"stream": {"service_name": "lk-json"}, "values": [[str(t0 + 3 * NS), "user 19 logged in"]]}]}
    for _ in range(2):
        r = http.post("/loki/api/v1/push", json=retry,
                      headers={"Authorization": f"Bearer {live.key}", "Idempotency-Key": "push-0001"})
        assert r.status_code == 204, r.text
    assert len(live.lines("lk-json")) == 4


def test_loki_bad_bodies_are_4xx_and_good_entries_of_a_partly_bad_push_are_stored(live: Live, http: httpx.Client) -> None:
    auth = {"X-API-Key": live.key}
    cases = [
        (b'{"streams": [', {"Content-Type": "application/json"}, 400, "malformed JSON"),
        (b"not snappy at all \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", PROTOBUF, 400, "snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\x01")), PROTOBUF, 400, "malformed protobuf"),
        (b'{"lines": ["x"]}', {"Content-Type": "application/json"}, 422, "streams"),
        (b"a line", {"Content-Type": "text/plain"}, 415, "content type"),
        (b"\x1f\x8b broken", {"Content-Type": "application/json", "Content-Encoding": "gzip"}, 400, "gzip"),
        (b"{}", {"Content-Type": "application/json", "Content-Encoding": "br"}, 415, "Content-Encoding"),
        (gzip.compress(b" " * (16 * 1024 * 1024 + 10)), {"Content-Type": "application/json", "Content-Encoding": "gzip"},
         413, "max_request_bytes"),
    ]
    for body, headers, status, words in cases:
        r = http.post("/loki/api/v1/push", content=body, headers={**headers, **auth})
        assert r.status_code == status, (words, r.status_code, r.text)
        assert words in r.json()["detail"], r.text

    # one good entry, one empty line, one bad timestamp, one stream without a stream label: the good one is stored
    t0 = 1_733_060_000_000_000_000
    payload = {"streams": [
        {"stream": {"service_name": "lk-partial"},
         "values": [[str(t0), "disk 91% full on /var"], [str(t0), ""], ["yesterday", "late line"], ["9" * 400, "far"]]},
        {"stream": {"app": "nameless"}, "values": [[str(t0), "where do I go"]]},
    ]}
    r = http.post("/loki/api/v1/push", json=payload, headers=auth)
    assert r.status_code == 400, r.text
    answer = r.json()
    assert answer["accepted"] == 1 and answer["rejected"] == 4
    assert "empty line" in answer["detail"] and "yesterday" in answer["detail"] and "9999" in answer["detail"]
    assert "'service_name' or 'job' label" in answer["detail"]
    assert [x.raw for x in live.lines("lk-partial")] == ["disk 91% full on /var"]

    # nothing storable: 422; a bad stream name: refused with why
    r = http.post("/loki/api/v1/push", json={"streams": [{"stream": {"service_name": "lk-partial"},
                                                         "values": [[str(t0), " "]]}]}, headers=auth)
    assert r.status_code == 422, r.text
    r = http.post("/loki/api/v1/push", content=loki_protobuf([('{job="ns/app"}', [(t0, "x", {})])]),
                  headers={**PROTOBUF, **auth})
    assert r.status_code == 422 and "not allowed" in r.json()["detail"], r.text
    # an empty push is fine, as in Loki
    assert http.post("/loki/api/v1/push", json={"streams": []}, headers=auth).status_code == 204
    # more entries than max_lines_per_batch: 413, nothing stored
    settings = live.app.state.settings
    settings.max_lines_per_batch = 2
    try:
        r = http.post("/loki/api/v1/push", headers=auth, json={"streams": [{"stream": {"service_name": "lk-partial"},
                      "values": [[str(t0), f"line {k}"] for k in range(3)]}]})
        assert r.status_code == 413 and "max_lines_per_batch" in r.json()["detail"], r.text
        r = http.post("/v1/logs", headers=auth, json=otlp_json("lk-partial", [{"body": {"stringValue": "x"}}] * 3))
        assert r.status_code == 413 and "max_lines_per_batch" in r.json()["message"], r.text
    finally:
        settings.max_lines_per_batch = 10_000
    assert len(live.lines("lk-partial")) == 1


def test_push_keys_need_the_ingest_scope_and_their_streams(live: Live, http: httpx.Client) -> None:
    loki = {"streams": [{"stream": {"service_name": "lk-scoped"}, "values": [["1733070000000000000", "hello"]]}]}
    otlp = otlp_json("lk-scoped", [{"body": {"stringValue": "hello"}}])
    reader = live.make_key("reader", ["read"])
    limited = live.make_key("shipper-a", ["ingest"], ["lk-scoped"])
    for path, body in (("/loki/api/v1/push", loki), ("/v1/logs", otlp)):
        assert http.post(path, json=body).status_code == 401
        assert http.post(path, json=body, headers={"X-API-Key": "ls_wrongwrongwrong"}).status_code == 401
        r = http.post(path, json=body, headers={"X-API-Key": reader})
        assert r.status_code == 403 and "'ingest'" in r.text, r.text
        assert http.post(path, json=body, headers={"Authorization": f"Bearer {limited}"}).status_code in (200, 204)
    other = {"streams": [{"stream": {"service_name": "lk-other"}, "values": [["1733070000000000000", "hello"]]}]}
    r = http.post("/loki/api/v1/push", json=other, headers={"X-API-Key": limited})
    assert r.status_code == 403 and "lk-other" in r.text, r.text
    r = http.post("/v1/logs", content=otlp_proto("lk-other", ["hello"]), headers={**PROTOBUF, "X-API-Key": limited})
    assert r.status_code == 403
    with Session(live.app.state.engine) as session:  # refused before creating it
        assert session.exec(select(Stream).where(Stream.name == "lk-other")).first() is None


def test_unknown_streams_refused_when_push_create_streams_is_off(live: Live, http: httpx.Client) -> None:
    settings = live.app.state.settings
    settings.push_create_streams = False
    try:
        r = http.post("/loki/api/v1/push", json={"streams": [{"stream": {"service_name": "lk-nope"},
                                                             "values": [["1733070000000000000", "hello"]]}]},
                      headers={"X-API-Key": live.key})
        assert r.status_code == 404 and "no stream named 'lk-nope'" in r.json()["detail"], r.text
        r = http.post("/v1/logs", json=otlp_json("lk-nope", [{"body": {"stringValue": "hello"}}]),
                      headers={"X-API-Key": live.key})
        assert r.status_code == 404 and "lk-nope" in r.json()["message"], r.text
    finally:
        settings.push_create_streams = True


# --------------------------------------------------------------------------- OTLP by hand: JSON and protobuf


def otlp_json(service: str, records: list[dict], resource: dict | None = None) -> dict:
    attributes = [{"key": "service.name", "value": {"stringValue": service}}]
    attributes += [{"key": k, "value": {"stringValue": v}} for k, v in (resource or {}).items()]
    return {"resourceLogs": [{"resource": {"attributes": attributes},
                              "scopeLogs": [{"scope": {"name": "hand.made"}, "logRecords": records}]}]}


def otlp_proto(service: str, bodies: list[str], ts: int = 1_733_080_000_000_000_000) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    resource_logs.resource.attributes.add(key="service.name").value.string_value = service
    scope_logs = resource_logs.scope_logs.add()
    for k, body in enumerate(bodies):
        record = scope_logs.log_records.add(time_unix_nano=ts + k * NS, severity_number=17)
        record.body.string_value = body
    return request.SerializeToString()


def test_otlp_json_and_protobuf_with_partial_success(live: Live, http: httpx.Client) -> None:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    auth = {"X-API-Key": live.key}
    t0 = 1_733_090_000_000_000_000
    records = [
        {"timeUnixNano": str(t0), "severityText": "WARN", "traceId": "5b8efff798038103d269b633813fc60c",
         "spanId": "eee19b7ec3c1b174", "body": {"stringValue": "cache miss ratio 0.42 above 0.3"},
         "attributes": [{"key": "attempt", "value": {"intValue": "3"}}, {"key": "ratio", "value": {"doubleValue": "NaN"}}]},
        {"observedTimeUnixNano": str(t0 + NS), "severityNumber": 9,
         "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "login"}}]}}},
        {"timeUnixNano": str(t0), "body": {"stringValue": ""}},  # refused: empty
    ]
    r = http.post("/v1/logs", content=gzip.compress(json.dumps(otlp_json("ot-json", records, {"host.name": "web-1"})).encode()),
                  headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    partial = r.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1" and "empty line" in partial["errorMessage"], r.text
    lines = live.lines("ot-json")
    assert [x.raw for x in lines] == ["cache miss ratio 0.42 above 0.3", '{"event":"login"}']
    assert lines[0].timestamp == pytest.approx(t0 / NS) and lines[1].timestamp == pytest.approx(t0 / NS + 1)
    assert lines[0].attributes == {"host.name": "web-1", "attempt": 3, "ratio": "nan", "level": "WARN",
                                   "trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174",
                                   "otel.scope.name": "hand.made"}
    assert lines[1].attributes["level"] == "INFO"

    r = http.post("/v1/logs", content=otlp_proto("ot-proto", ["queue backlog 1200 jobs", "queue backlog 1300 jobs"]),
                  headers={**auth, **PROTOBUF})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf", r.text
    response = ExportLogsServiceResponse.FromString(r.content)
    assert not response.HasField("partial_success")
    assert [(x.raw, x.attributes["level"]) for x in live.lines("ot-proto")] == [
        ("queue backlog 1200 jobs", "ERROR"), ("queue backlog 1300 jobs", "ERROR")]

    # fully accepted JSON: {}; undecodable: 400; no service.name: 422
    assert http.post("/v1/logs", json=otlp_json("ot-json", [{"body": {"stringValue": "ok"}}]), headers=auth).json() == {}
    assert http.post("/v1/logs", content=b"\xff\xff\xff", headers={**auth, **PROTOBUF}).status_code == 400
    assert http.post("/v1/logs", content=b"{", headers={**auth, "Content-Type": "application/json"}).status_code == 400
    assert http.post("/v1/logs", content=b"x", headers={**auth, "Content-Type": "text/plain"}).status_code == 415
    nameless = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}]}]}
    r = http.post("/v1/logs", json=nameless, headers=auth)
    assert r.status_code == 422 and "service.name" in r.json()["message"], r.text
    bad_id = otlp_json("ot-json", [{"traceId": "zz", "body": {"stringValue": "x"}}])
    assert http.post("/v1/logs", json=bad_id, headers=auth).status_code == 400


# --------------------------------------------------------------------------- the OpenTelemetry SDK


def test_opentelemetry_sdk_exporter_through_python_logging(live: Live, http: httpx.Client) -> None:
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as exc:
        pytest.skip(f"the OpenTelemetry SDK is not installed ({exc}): pip install -e '.[test]'")

    provider = LoggerProvider(resource=Resource.create({"service.name": "ot-sdk", "deployment.environment": "test"}))
    exporter = OTLPLogExporter(endpoint=f"{live.url}/v1/logs", headers={"X-API-Key": live.key}, timeout=60)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger = logging.getLogger("tests.push.otel")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    tracer = TracerProvider().get_tracer("tests.push")
    try:
        before = time.time()
        with tracer.start_as_current_span("checkout") as span:
            for order in range(30):
                logger.info("order %d paid with card ending %d", 1000 + order, order % 10, extra={"order": 1000 + order})
            ids = span.get_span_context()
        provider.force_flush()
        lines = wait_for(lambda: len(live.lines("ot-sdk")) >= 30 and live.lines("ot-sdk"), 60, 0.1, "the SDK's lines")
        assert live.stream("ot-sdk")["settings"]["train_mode"] is True
        first = lines[0]
        assert first.raw == "order 1000 paid with card ending 0"
        assert before - 1 <= first.timestamp <= time.time() + 1
        assert first.severity == "train"
        attrs = first.attributes
        assert attrs["deployment.environment"] == "test" and attrs["order"] == 1000 and attrs["level"] == "INFO"
        assert attrs["trace_id"] == format(ids.trace_id, "032x") and attrs["span_id"] == format(ids.span_id, "016x")
        assert attrs["otel.scope.name"] == "tests.push.otel" and "service.name" not in attrs

        # out of train mode: the next lines are scored by RAPID against what the stream learned
        r = http.patch("/api/v1/streams/ot-sdk", json={"settings": {"train_mode": False}},
                       headers={"X-API-Key": live.key})
        assert r.status_code == 200, r.text
        logger.warning("order %d paid with card ending %d", 2000, 3)
        logger.error("kernel panic: unable to mount root fs on unknown-block(0,0)")
        provider.force_flush()
        scored = wait_for(lambda: len(live.lines("ot-sdk")) >= 32 and live.lines("ot-sdk")[30:], 60, 0.1, "scored lines")
        assert all(x.rapid_score is not None and x.severity in ("normal", "watch", "danger") for x in scored), \
            [(x.raw, x.rapid_score, x.severity) for x in scored]
        assert scored[1].attributes["level"] == "ERROR"
        assert scored[1].rapid_score >= scored[0].rapid_score  # the unseen line is the odder one
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


# --------------------------------------------------------------------------- units


def test_loki_labels_strings_parse_with_escapes() -> None:
    from logsense.server.api.loki import parse_labels

    assert parse_labels("{}") == {}
    assert parse_labels('{a="b", c="d \\"e\\" \\\\ \\n \\u00e9 \\xc3\\xa9",}') == {"a": "b", "c": 'd "e" \\ \n é é'}
    assert parse_labels('{service_name="x",job="y"}') == {"service_name": "x", "job": "y"}
    for bad in ('a="b"', '{a=b}', '{a="b" c="d"}', '{="b"}', '{a="\\q"}'):
        with pytest.raises(ValueError):
            parse_labels(bad)


def test_key_from_headers() -> None:
    from fastapi import HTTPException

    from logsense.server.auth import key_from_headers

    basic = base64.b64encode(b"user:ls_secret").decode()
    assert key_from_headers({"X-API-Key": "ls_a"}) == "ls_a"
    assert key_from_headers({"authorization": "Bearer ls_b"}) == "ls_b"
    assert key_from_headers({"authorization": f"Basic {basic}"}) == "ls_secret"
    assert key_from_headers({"authorization": f"Basic {base64.b64encode(b'ls_c:').decode()}"}) == "ls_c"
    assert key_from_headers({}) is None
    with pytest.raises(HTTPException) as err:
        key_from_headers({"authorization": "Basic !!!"})
    assert err.value.status_code == 401
