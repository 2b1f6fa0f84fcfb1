"""The TCP syslog listener (`server/syslog.py`): parsing and framing units, backpressure, and
end to end against a real uvicorn server with a plain TCP client and, where it is installed, a
real rsyslogd forwarding with `omfwd` (octet-counted framing, RFC 5424 and its traditional format).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from logsense.server import syslog
from logsense.server.client import free_port
from logsense.server.metrics import Metrics
from logsense.server.syslog import Framer, Frames, parse, sanitise_stream_name, to_entries
from logsense.server.tables import LogLine

from .conftest import make_settings
from .helpers import LiveServer, live_server, wait_for

RSYSLOGD = "/usr/sbin/rsyslogd"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --------------------------------------------------------------------------- parsing


def test_rfc5424_with_structured_data() -> None:
    frame = ('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 '
             '[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
             '[origin ip="192.0.2.1" ip="192.0.2.2" note="a \\"quoted\\" \\] bracket"] '
             '\ufeffAn application event log entry...').encode()
    m = parse(frame)
    assert m.malformed is None
    assert m.text == "An application event log entry..."  # the BOM is not part of the line
    assert m.timestamp == ts("2003-10-11T22:14:15.003+00:00")
    assert m.attributes == {
        "facility": "local4", "severity": "notice", "hostname": "mymachine.example.com", "app": "evntslog",
        "procid": "42", "msgid": "ID47",
        "structured_data": {"exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
                            "origin": {"ip": ["192.0.2.1", "192.0.2.2"], "note": 'a "quoted" ] bracket'}},
    }
    assert m.stream_name() == "evntslog" and m.stream_name("host") == "mymachine.example.com"
    m = parse(b"<34>1 2003-08-24T05:14:15.000003-07:00 - - - - - no header fields")
    assert m.malformed is None and m.text == "no header fields"
    assert m.timestamp == ts("2003-08-24T05:14:15.000003-07:00")
    assert m.attributes == {"facility": "auth", "severity": "crit"}
    assert m.stream_name() == "syslog"


def test_rfc3164_with_and_without_pid() -> None:
    m = parse(b"<38>Feb  5 17:32:18 web-1 sshd[1234]: Accepted publickey for root", NOW)
    assert (m.text, m.malformed) == ("Accepted publickey for root", None)
    assert m.timestamp == ts("2026-02-05T17:32:18+00:00")  # the current year, UTC
    assert m.attributes == {"facility": "auth", "severity": "info", "hostname": "web-1", "app": "sshd",
                            "procid": "1234"}
    assert m.stream_name() == "sshd" and m.stream_name("host") == "web-1"

    m = parse(b"<13>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8\n", NOW)
    assert m.text == "'su root' failed for lonvick on /dev/pts/8"
    assert m.attributes == {"facility": "user", "severity": "notice", "hostname": "mymachine", "app": "su"}
    assert m.timestamp == ts("2026-10-11T22:14:15+00:00")

    m = parse(b"<13>Dec 31 23:59:59 host cron: last year's", datetime(2027, 1, 1, 0, 0, 5, tzinfo=timezone.utc))
    assert m.timestamp == ts("2026-12-31T23:59:59+00:00")  # not a year ahead
    m = parse(b"<13>Mar  1 10:00:00.250 +02:00 host app: a zone given", NOW)
    assert m.timestamp == ts("2026-03-01T10:00:00.25+02:00") and m.text == "a zone given"
    m = parse(b"<13>Mar  1 10:00:00 app[7]: no hostname", NOW)  # what logger writes to a local socket
    assert m.attributes == {"facility": "user", "severity": "notice", "app": "app", "procid": "7"}
    m = parse(b"<86>2026-12-07T10:00:00.123456+01:00 host tag: rsyslog's RSYSLOG_ForwardFormat", NOW)
    assert m.timestamp == ts("2026-12-07T10:00:00.123456+01:00") and m.stream_name() == "tag"
    m = parse(b"<13>Mar  1 10:00:00 host no tag here", NOW)
    assert (m.text, m.app, m.hostname) == ("no tag here", None, "host")


def test_malformed_messages_keep_what_was_parsed() -> None:
    m = parse(b"just a line, no PRI")
    assert (m.text, m.attributes, m.timestamp) == ("just a line, no PRI", {}, None)
    assert "PRI" in m.malformed
    m = parse(b"<13>not a syslog header")
    assert m.text == "not a syslog header" and m.attributes == {"facility": "user", "severity": "notice"}
    assert "TIMESTAMP" in m.malformed
    m = parse(b'<165>1 2003-10-11T22:14:15Z host app 1 - [broken sd="x] the message')
    assert m.malformed and m.text.startswith("1 2003-10-11T22:14:15Z host app")
    assert m.attributes["app"] == "app" and m.stream_name() == "app"
    assert parse(b"<999>Oct 11 22:14:15 host a: b").malformed  # PRI over 191
    assert parse(b"<13>Feb 30 22:14:15 host a: b", NOW).malformed  # no such day

    settings = make_settings(Path("unused"), max_line_bytes=100)
    batch = Frames([(b"<13>Oct 11 22:14:15 host app: fine", None), (b"plain text", None),
                    (b"<13>Oct 11 22:14:15 host app: " + b"x" * 300, None),
                    (b"<13>1 1960-01-01T00:00:00Z host app - - - before 1970", None),
                    (b"<13>Oct 11 22:14:15 host app: cut by framing", "frame of 900 octets cut to 800")], NOW)
    groups, malformed = to_entries(batch, settings)
    assert sorted(groups) == ["app", "syslog"]
    assert malformed == {0: False, 1: True, 2: False, 3: True, 4: True}
    plain = groups["syslog"][0]
    assert (plain.message, plain.timestamp_ns) == ("plain text", None) and "PRI" in plain.attributes["malformed"]
    long = groups["app"][1]
    assert len(long.message) == 100 and long.attributes["truncated"] is True
    assert groups["app"][2].timestamp_ns is None and "1970" in groups["app"][2].attributes["malformed"]
    assert groups["app"][3].attributes["malformed"] == "frame of 900 octets cut to 800"


def test_stream_names_are_sanitised() -> None:
    assert sanitise_stream_name("my app/worker:1") == "my-app-worker-1"
    assert sanitise_stream_name("a" * 100) == "a" * 64
    assert sanitise_stream_name("..") == "--" and sanitise_stream_name("") == "syslog"
    assert parse(b"<13>1 2026-01-01T00:00:00Z h k8s/ns\xc3\xa9 - - - x").stream_name() == "k8s-ns-"
    frames = Frames([(b"<13>Oct 11 22:14:15 web-1 nginx: a", None), (b"<13>Oct 11 22:14:15 nginx: b", None)], NOW)
    by_host, _ = to_entries(frames, make_settings(Path("unused"), syslog_stream_by="host"))
    assert {name: [e.message for e in entries] for name, entries in by_host.items()} == {"web-1": ["a"], "nginx": ["b"]}


def test_serve_takes_a_syslog_port() -> None:
    from logsense.server.cli import _settings, build_parser

    args = build_parser(include_bench=False).parse_args(["serve", "--syslog-port", "5514"])
    assert _settings(args, syslog_port=args.syslog_port).syslog_port == 5514
    settings = make_settings(Path("unused"))
    assert (settings.syslog_port, settings.syslog_host, settings.syslog_stream_by) == (None, "127.0.0.1", "app")


# --------------------------------------------------------------------------- framing


def test_octet_counting_split_across_reads() -> None:
    frames = [b"<13>1 2026-01-01T00:00:00Z h app - - - first", b"<13>Oct 11 22:14:15 h app: second\n",
              "<13>1 2026-01-01T00:00:00Z h app - - - d\u00e9j\u00e0 vu".encode()]
    wire = b"".join(str(len(f)).encode() + b" " + f for f in frames)
    framer = Framer(1000)
    got = []
    for i in range(len(wire)):  # one byte a read: counts, spaces and bodies all split
        got += framer.feed(wire[i:i + 1])
    got += framer.close()
    assert got == [(f, None) for f in frames]

    framer = Framer(1000)  # whole frames and a split one in the same reads
    assert framer.feed(wire[:60]) == [(frames[0], None)]
    assert framer.feed(wire[60:]) == [(frames[1], None), (frames[2], None)]

    framer = Framer(10)  # over the limit: cut, the rest skipped, the next frame read whole
    assert framer.feed(b"20 0123456789") == [(b"0123456789", "frame of 20 octets cut to 10")]
    assert framer.feed(b"abcdefghij3 xyz") == [(b"xyz", None)]
    assert framer.feed(b"9 short") == [] and framer.close() == [(b"short", "connection closed 4 octets short "
                                                                             "of the frame's 9")]
    framer = Framer(100)  # no count where one should be: read up to LF, marked
    assert framer.feed(b"5 hello<13>oops\n3 abc") == [(b"hello", None), (b"<13>oops", "no octet count (RFC 6587 "
                                                                             "LEN SP) before the frame: read up to LF"),
                                                     (b"abc", None)]


def test_newline_framing() -> None:
    framer = Framer(1000)
    assert framer.feed(b"<13>Oct 11 22:14:15 h a: one\r\n<13>Oct 11 22:14:15 h a: tw") == [
        (b"<13>Oct 11 22:14:15 h a: one\r", None)]
    assert framer.feed(b"o\n\n<13>Oct 11 22:14:15 h a: three") == [(b"<13>Oct 11 22:14:15 h a: two", None)]
    assert framer.close() == [(b"<13>Oct 11 22:14:15 h a: three", None)]  # the last one needs no LF
    assert parse(b"<13>Oct 11 22:14:15 h a: one\r").text == "one"
    framer = Framer(8)
    assert framer.feed(b"<13>0123456789") == [(b"<13>0123", "message over 8 bytes without LF: cut")]
    assert framer.feed(b"rest of it\n<1>ok\n") == [(b"<1>ok", None)]


# --------------------------------------------------------------------------- backpressure


def test_a_flood_waits_on_a_full_queue_and_the_loop_keeps_running(tmp_path: Path) -> None:
    """Storing blocked: the queue fills, the connection stops reading (the sender's socket fills),
    the event loop still answers; released, every message is stored once."""
    settings = make_settings(tmp_path / "data", syslog_port=free_port())
    services = SimpleNamespace(settings=settings, metrics=Metrics(), registry=None)  # a `Services` without models
    release, stored = threading.Event(), []

    def store(batch: Frames) -> None:
        release.wait(60)
        stored.extend(batch.frames)

    n = 300_000  # ~12 MB: more than the socket buffers hold
    payload = b"".join(b"<13>Oct 11 22:14:15 h app: message %d\n" % i for i in range(n))
    sent = threading.Event()

    def send() -> None:
        with socket.create_connection(("127.0.0.1", settings.syslog_port)) as s:
            s.sendall(payload)
        sent.set()

    async def main() -> None:
        listener = syslog.SyslogListener(services)
        listener.store = store
        await listener.start()
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        ticks = 0
        deadline = time.monotonic() + 20
        while listener.queue.qsize() < syslog.QUEUE_BATCHES and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            ticks += 1
        assert listener.queue.qsize() == syslog.QUEUE_BATCHES
        started = time.monotonic()
        await asyncio.sleep(0.05)  # the loop is not blocked by the waiting connection
        assert time.monotonic() - started < 1.0
        assert not sent.is_set()  # the sender is held back: the server stopped reading
        release.set()
        await asyncio.get_running_loop().run_in_executor(None, sent.wait, 30)
        await asyncio.sleep(0.5)
        await listener.stop()

    asyncio.run(main())
    assert len(stored) == n
    assert stored[0][0] == b"<13>Oct 11 22:14:15 h app: message 0" and stored[-1][0].endswith(b"message %d" % (n - 1))


def test_stop_stores_what_open_connections_sent(tmp_path: Path) -> None:
    """Stopping ends the open connections: their buffered messages, and a last one without its LF,
    are still handed on before the listener returns."""
    settings = make_settings(tmp_path / "data", syslog_port=free_port())
    services = SimpleNamespace(settings=settings, metrics=Metrics(), registry=None)  # a `Services` without models
    stored = []

    async def main() -> None:
        listener = syslog.SyslogListener(services)
        listener.store = lambda batch: stored.extend(batch.frames)
        await listener.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.syslog_port)
        writer.write(b"<13>Oct 11 22:14:15 h app: one\n<13>Oct 11 22:14:15 h app: two, no LF")
        await writer.drain()
        await asyncio.sleep(0.05)  # read by the listener, not yet flushed (200 ms)
        await listener.stop()
        assert await reader.read() == b""  # the listener closed the connection
        writer.close()

    asyncio.run(main())
    assert stored == [(b"<13>Oct 11 22:14:15 h app: one", None), (b"<13>Oct 11 22:14:15 h app: two, no LF", None)]


# --------------------------------------------------------------------------- end to end


class Live(LiveServer):
    """The shared live server with the syslog listener on (`syslog_port`)."""

    def __init__(self, data_dir: Path, name: str = "syslog") -> None:
        self.syslog_port = free_port()
        super().__init__(data_dir, name, syslog_port=self.syslog_port)

    def wait_lines(self, stream: str, n: int, timeout: float = 60) -> list[LogLine]:
        return wait_for(lambda: (lines := self.lines(stream, missing_ok=True)) and len(lines) >= n and lines, timeout, 0.1,
                        f"{n} lines in stream {stream!r}")

    def metric(self, outcome: str) -> float:
        text = httpx.get(self.url + "/metrics", headers={"X-API-Key": self.key}, timeout=30).text
        for line in text.splitlines():
            if line.startswith(f'logsense_syslog_messages_total{{outcome="{outcome}"}}'):
                return float(line.split()[-1])
        return 0.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_server(tmp_path_factory.mktemp("syslog") / "data", "syslog", cls=Live) as server:
        yield server


def octet(frame: bytes) -> bytes:
    return str(len(frame)).encode() + b" " + frame


def test_tcp_client_with_both_framings(live: Live) -> None:
    stored_before, malformed_before = live.metric("stored"), live.metric("malformed")
    with socket.create_connection(("127.0.0.1", live.syslog_port)) as s:  # octet counting, split mid-frame
        wire = (octet(b'<165>1 2026-12-07T10:00:00.5Z web-1 e2e-app 42 REQ [req@32473 id="7" path="/a b"] '
                      b'request served in 12 ms')
                + octet(b"<163>1 2026-12-07T10:00:01Z web-1 e2e-app 42 - - request failed: timeout"))
        s.sendall(wire[:50])
        time.sleep(0.3)  # a flush of what came so far; the rest continues the frame
        s.sendall(wire[50:])
    hour_ago = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)  # RFC 3164: no year, no zone
    bsd = [(hour_ago + timedelta(seconds=i)).strftime("%b %e %H:%M:%S").encode() for i in (2, 3)]
    with socket.create_connection(("127.0.0.1", live.syslog_port)) as s:  # newline framing, RFC 3164
        s.sendall(b"<38>%s web-2 e2e-app[99]: user logged in\n" % bsd[0]
                  + b"<38>%s web-2 e2e-app: user logged out\r\n" % bsd[1]
                  + b"not syslog at all\n")
    lines = live.wait_lines("e2e-app", 4)
    assert [line.raw for line in lines] == ["request served in 12 ms", "request failed: timeout", "user logged in",
                                            "user logged out"]
    assert [line.timestamp for line in lines] == [
        ts("2026-12-07T10:00:00.5+00:00"), ts("2026-12-07T10:00:01+00:00"),
        (hour_ago + timedelta(seconds=2)).timestamp(), (hour_ago + timedelta(seconds=3)).timestamp()]
    assert lines[0].attributes == {"facility": "local4", "severity": "notice", "hostname": "web-1", "app": "e2e-app",
                                   "procid": "42", "msgid": "REQ",
                                   "structured_data": {"req@32473": {"id": "7", "path": "/a b"}}}
    assert lines[1].attributes["severity"] == "err"
    assert lines[2].attributes == {"facility": "auth", "severity": "info", "hostname": "web-2", "app": "e2e-app",
                                   "procid": "99"}
    plain = live.wait_lines("syslog", 1)  # the malformed one: stored as a plain line, in the default stream
    assert plain[-1].raw == "not syslog at all" and "PRI" in plain[-1].attributes["malformed"]
    wait_for(lambda: live.metric("stored") >= stored_before + 4, 30, 0.1, "the stored count")
    assert live.metric("malformed") == malformed_before + 1
    r = httpx.get(f"{live.url}/api/v1/streams/e2e-app", headers={"X-API-Key": live.key}, timeout=30)
    assert r.status_code == 200 and r.json()["settings"]["train_mode"] is True  # created as a push creates it


def test_rsyslog_forwards_with_omfwd(live: Live, tmp_path: Path) -> None:
    if not os.path.exists(RSYSLOGD):
        pytest.skip(f"{RSYSLOGD} not found: apt-get install rsyslog to run rsyslog against the listener")
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.touch()
    b.touch()
    config = tmp_path / "rsyslog.conf"
    action = (f'action(type="omfwd" target="127.0.0.1" port="{live.syslog_port}" protocol="tcp" '
              'TCP_Framing="octet-counted"')
    config.write_text(f"""
global(workDirectory="{tmp_path}")
module(load="imfile")
ruleset(name="rfc5424") {{ {action} template="RSYSLOG_SyslogProtocol23Format") }}
ruleset(name="traditional") {{ {action}) }}
input(type="imfile" File="{a}" Tag="rsyslog-5424:" Facility="local3" Severity="warning" ruleset="rfc5424")
input(type="imfile" File="{b}" Tag="rsyslog-3164:" ruleset="traditional")
""")  # no imuxsock: the machine's /dev/log is left alone
    out = tmp_path / "rsyslogd.out"
    proc = subprocess.Popen([RSYSLOGD, "-n", "-f", str(config), "-i", str(tmp_path / "rsyslogd.pid")],
                            stdout=open(out, "wb"), stderr=subprocess.STDOUT)
    try:
        time.sleep(1.0)  # imfile watches the files from their current end
        assert proc.poll() is None, out.read_text()
        before = time.time()
        with a.open("a") as f:
            f.write("disk /dev/sda1 at 91% capacity\nbackup job 17 finished\n")
        with b.open("a") as f:
            f.write("cache miss ratio 0.42 over 60 s\n")
        lines = live.wait_lines("rsyslog-5424", 2, 60)
        assert [line.raw for line in lines] == ["disk /dev/sda1 at 91% capacity", "backup job 17 finished"]
        assert lines[0].attributes["facility"] == "local3" and lines[0].attributes["severity"] == "warning"
        assert lines[0].attributes["app"] == "rsyslog-5424" and lines[0].attributes["hostname"]
        assert all(before - 5 <= line.timestamp <= time.time() + 5 for line in lines)
        lines = live.wait_lines("rsyslog-3164", 1, 60)
        assert lines[0].raw == "cache miss ratio 0.42 over 60 s"
        assert lines[0].attributes["app"] == "rsyslog-3164" and lines[0].attributes["severity"] == "notice"
        assert abs(lines[0].timestamp - before) < 86400  # the traditional format's time, read in the current year
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger not installed")
def test_logger_over_tcp_octet_counted(live: Live) -> None:
    """util-linux `logger --tcp --octet-count` (RFC 5424 with its timeQuality SD-ELEMENT) straight to the listener."""
    subprocess.run(["logger", "--tcp", "--octet-count", "-n", "127.0.0.1", "-P", str(live.syslog_port),
                    "-t", "logger-e2e", "--id=4242", "-p", "daemon.err", "--rfc5424",
                    "--sd-id", "meta@32473", "--sd-param", 'job="nightly"', "cron job failed"],
                   check=True, timeout=30)
    [line] = live.wait_lines("logger-e2e", 1)
    assert line.raw == "cron job failed"
    assert line.attributes["facility"] == "daemon" and line.attributes["severity"] == "err"
    assert line.attributes["procid"] == "4242"
    assert line.attributes["structured_data"]["meta@32473"] == {"job": "nightly"}
    assert abs(line.timestamp - time.time()) < 60
