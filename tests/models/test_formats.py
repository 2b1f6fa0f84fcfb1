"""Any log format: `auto` header detection on each loghub-2k layout, the default masks, grouping accuracy."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from logsense.models.bench.parsing import grouping_accuracy
from logsense.models.parsing import LogParser
from logsense.models.parsing.headers import AUTO_LAYOUTS, PRESETS, HeaderParser, LayoutDetector, parse_timestamp
from logsense.models.parsing.masking import Masker

DATA = Path(os.environ.get("LOGSENSE_DATASETS") or Path(__file__).resolve().parents[2].parent / "shared" / "datasets")

# Two real lines of each loghub-2k system (logpai/loghub <System>_2k.log), with what the header
# must leave as the message of the first (the ground truth's Content column).
SAMPLES = {
    "Android": ("android", [
        "03-17 16:13:46.144  1702  2105 D PowerManagerService: ready=true,policy=3,wakefulness=1,wksummary=0x0,uasummary=0x1",
        "03-17 16:15:49.573  2227  2227 I PanelView: cancelPeek: false",
    ], "ready=true,policy=3,wakefulness=1,wksummary=0x0,uasummary=0x1"),
    "Apache": ("apache", [
        "[Sun Dec 04 05:04:03 2005] [notice] jk2_init() Found child 8765 in scoreboard slot 11",
        "[Sun Dec 04 05:15:09 2005] [error] [client 222.166.160.184] Directory index forbidden by rule: /var/www/html/",
    ], "jk2_init() Found child 8765 in scoreboard slot 11"),
    "HDFS": ("hdfs", [
        "081109 224234 3638 WARN dfs.DataNode$DataXceiver: 10.251.73.220:50010:Got exception while serving "
        "blk_4934527196392001803 to /10.251.203.246:",
        "081111 055936 28 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: 10.250.7.244:50010 "
        "is added to blk_-4875138366845786590 size 67108864",
    ], "10.251.73.220:50010:Got exception while serving blk_4934527196392001803 to /10.251.203.246:"),
    "HPC": ("hpc", [
        "437261 node-10 action start 1096995263 1 boot  (command 3169)",
        "2586431 Interconnect-0N03 switch_module error 1074237429 1 Linkerror event interval expired",
    ], "boot  (command 3169)"),
    "Linux": ("syslog", [
        "Jun 17 20:55:07 combo ftpd[30759]: connection from 82.252.162.81 (lns-vlq-45-tou-82-252-162-81.adsl.proxad.net) "
        "at Fri Jun 17 20:55:07 2005 ",
        "Jun 14 15:16:02 combo sshd(pam_unix)[19937]: check pass; user unknown",
    ], "connection from 82.252.162.81 (lns-vlq-45-tou-82-252-162-81.adsl.proxad.net) at Fri Jun 17 20:55:07 2005 "),
    "Mac": ("syslog", [
        "Jul  1 09:29:02 calvisitor-10-105-160-95 sandboxd[129] ([31211]): com.apple.Addres(31211) deny network-outbound",
        "Jul  6 16:15:50 calvisitor-10-105-162-178 kernel[0]: IOThunderboltSwitch<0>(0x0)::listenerCallback - "
        "Thunderbolt HPD packet for route = 0x0 port = 11 unplug = 0",
    ], "com.apple.Addres(31211) deny network-outbound"),
    "OpenSSH": ("syslog", [
        "Dec 10 07:28:37 LabSZ sshd[24275]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh "
        "ruser= rhost=112.95.230.3  user=root",
        "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
    ], "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=112.95.230.3  user=root"),
    "OpenStack": ("python", [
        "nova-compute.log.1.2017-05-16_13:55:31 2017-05-16 00:11:12.170 2931 INFO nova.virt.libvirt.driver [-] "
        "[instance: a015cf14-84bb-4156-a48d-7c4824ac7a9d] Instance spawned successfully.",
        "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:46.634 25746 INFO nova.osapi_compute.wsgi.server "
        "[req-60c3da91-bd1c-4693-991e-fa3580fa22c2 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -] "
        '10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829',
    ], "[instance: a015cf14-84bb-4156-a48d-7c4824ac7a9d] Instance spawned successfully."),
    "Spark": ("log4j", [
        "17/06/09 20:10:52 INFO executor.Executor: Running task 2.0 in stage 1.0 (TID 69)",
        "17/06/09 20:11:09 INFO python.PythonRunner: Times: total = 39, boot = 12, init = 26, finish = 1",
    ], "Running task 2.0 in stage 1.0 (TID 69)"),
    "Windows": ("cbs", [
        "2016-09-29 02:04:00, Info                  CBS    Read out cached package applicability for package: "
        "Package_for_KB3084135~31bf3856ad364e35~amd64~~6.1.1.0, ApplicableState: 112, CurrentState:112",
        "2016-09-28 04:30:31, Info                  CSI    00000001@2016/9/27:20:30:31.455 WcpInitialize (wcp.dll "
        "version 0.0.0.6) called (stack @0x7fed806eb5d @0x7fef9fb9b6d)",
    ], "Read out cached package applicability for package: Package_for_KB3084135~31bf3856ad364e35~amd64~~6.1.1.0, "
       "ApplicableState: 112, CurrentState:112"),
    "Zookeeper": ("log4j", [
        "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - "
        "Notification time out: 3200",
        "2015-07-30 18:18:02,003 - INFO  [ProcessThread(sid:1 cport:-1)::PrepRequestProcessor@476] - Processed session "
        "termination for sessionid: 0x14ede63a5a70002",
    ], "Notification time out: 3200"),
    "BGL": ("bgl", [
        "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO "
        "instruction cache parity error corrected",
        "1117869872 2005.06.04 R23-M0-NE-C:J05-U01 2005-06-04-00.24.32.432192 R23-M0-NE-C:J05-U01 RAS APP FATAL "
        "ciod: failed to read message prefix on control stream",
    ], "instruction cache parity error corrected"),
}


@pytest.mark.parametrize("system", sorted(SAMPLES))
def test_auto_detects_each_loghub_layout(system: str) -> None:
    layout, lines, first_message = SAMPLES[system]
    parser = LogParser(preset="auto")
    parsed = parser.parse_many(lines * 3)
    assert parser.layout == layout
    assert parser.header_parse_rate == 1.0
    assert parsed[0].message == first_message
    assert all(p.timestamp is not None for p in parsed)


@pytest.mark.parametrize("line,layout,ts,level,component,message", [
    ("2026-11-22T13:50:01.123Z ERROR [db] connection lost", "iso8601", "2026-11-22T13:50:01.123Z", "ERROR", "db",
     "connection lost"),
    ("2026-11-22 13:50:01,5 WARN something", "iso8601", "2026-11-22T13:50:01.5Z", "WARN", None, "something"),
    ("[2026-11-22 13:50:01] [ERROR] [db] disk full", "bracketed", "2026-11-22T13:50:01Z", "ERROR", "db", "disk full"),
    ("1763819401 ERROR disk full", "epoch", "2025-11-22T13:50:01Z", "ERROR", None, "disk full"),
    ('{"msg": "x", "lvl": 50, "ts": 1763819401123}', "json", "2025-11-22T13:50:01.123Z", "ERROR", None, "x"),
    ("srv1 Nov 22 13:50:01 host sshd[12]: Accepted password", "syslog", None, None, "sshd", "Accepted password"),
    ("2026-01-01 10:00:00,123 [main] INFO com.example.App - started", "log4j", "2026-01-01T10:00:00.123Z", "INFO",
     "com.example.App", "started"),
])
def test_auto_reads_common_layouts(line: str, layout: str, ts: str | None, level: str | None,
                                   component: str | None, message: str) -> None:
    headers = HeaderParser("auto")
    h = headers.parse(line)
    assert headers.layout == layout
    assert (h.level, h.component, h.message) == (level, component, message)
    if ts is not None:
        assert h.timestamp == pytest.approx(parse_timestamp(ts))
    else:
        assert h.timestamp is not None


def test_auto_prefers_the_specific_layout_and_switches_when_the_stream_changes() -> None:
    detector = LayoutDetector(sample=20, window=50, every=10)
    zk = SAMPLES["Zookeeper"][1][0]  # iso8601 fits it too, less well: log4j comes first
    for _ in range(30):
        detector.read(zk)
    assert detector.chosen == "log4j"
    spark_like = "2026-11-22 13:50:01 INFO x.Y: moved to a new stamp layout"  # log4j still fits: no switch
    android = SAMPLES["Android"][1][0]
    for _ in range(60):
        detector.read(android)
    assert detector.chosen == "android" and detector.switches == 1
    assert detector.read(spark_like)[4] is False  # android does not fit it: counted as not parsed
    assert set(AUTO_LAYOUTS) <= set(PRESETS) and "auto" in PRESETS


def test_header_parse_rate_counts_lines_the_layout_did_not_fit() -> None:
    parser = LogParser(preset="hdfs")
    assert parser.header_parse_rate is None
    parser.parse_many([SAMPLES["HDFS"][1][0], "a line in no layout", SAMPLES["HDFS"][1][1], "another one"])
    assert parser.header_parse_rate == 0.5
    prepared = parser.prepare_many([SAMPLES["HDFS"][1][0], "nothing"])
    parser.finish_many([SAMPLES["HDFS"][1][0], "nothing"], prepared)  # the helper's path counts the same
    assert (parser.lines_seen, parser.headers_parsed) == (6, 3)
    generic = LogParser(preset="generic")
    generic.parse_many(["2026-11-22 13:50:01 ERROR x", "no time here"])
    assert generic.header_parse_rate == 0.5


def test_auto_never_raises_and_keeps_unknown_lines_whole() -> None:
    parser = LogParser(preset="auto")
    odd = ["", "plain text line", "\x00\xff junk", "{not json", "[" * 5000, "1" * 300]
    parsed = parser.parse_many(odd * 40)  # past the sample: the checks run too
    assert [p.message for p in parsed[: len(odd)]] == [o for o in odd]
    assert parser.layout == "generic" and parser.header_parse_rate == 0.0


@pytest.mark.parametrize("text,expected", [
    ("attempt_1445087491445_0005_m_000001_0 done", "<ID> done"),
    ("container_1445087491445_0005_01_000001 exited", "<ID> exited"),
    ("Found block rdd_42_7 locally", "Found block <ID> locally"),
    ("Session: 30546174_108353204 initialized", "Session: <ID> initialized"),
    ("node node-246 and domain storage622 KB2813430", "node <ID> and domain <ID> <ID>"),
    ("words stay: UTF-8 x86_64 ee0 alt0 ssh2 v2 IPv4", "words stay: UTF-8 x86_64 ee0 alt0 ssh2 v2 IPv4"),
    ("hash a64f992 and 0x7fed806eb5d and 31bf3856ad364e35", "hash <HEX> and <HEX> and <HEX>"),
    ("seq 00000001 then 0000000a", "seq <HEX> then <HEX>"),
    ("id 123e4567-e89b-12d3-a456-426614174000", "id <UUID>"),
    ("open /var/www/html/index.html now", "open <PATH> now"),
    ("took 12ms, 1.5s and 1h2m3s; wrote 3.5GB of 512K", "took <DURATION>, <DURATION> and <DURATION>; wrote <SIZE> of <SIZE>"),
    ("from 10.250.19.102:54106 and 1.2.3.4", "from <IP> and <IP>"),
    ("at 2016/9/27:20:30:31.455 and 2017-05-16 00:00:00.008 and 20:30:31", "at <TIME> and <TIME> and <TIME>"),
    # a date inside the message: C's ctime, syslog's, a written one (its month and weekday vary too)
    ("connection at Fri Jun 17 07:07:00 2005 and Jul  1 09:00:55 and June 17, 2005 7:07 AM",
     "connection at <TIME> and <TIME> and <TIME> AM"),
    ("May 8 people on Sat Jun at 17 and Dec 2005", "May <NUM> people on Sat Jun at <NUM> and Dec <NUM>"),  # no time: words
    ("Invalid user webmaster from 1.2.3.4", "Invalid user <USER> from <IP>"),
    ("rhost=1.2.3.4  user=root ruser=", "rhost=<IP>  user=<USER> ruser="),
    ("PacketResponder 1 for block blk_-38865049064139660 terminating", "PacketResponder <NUM> for block <BLK> terminating"),
])
def test_default_masks(text: str, expected: str) -> None:
    assert Masker().mask(text) == expected


def test_grouping_accuracy_by_hand() -> None:
    truth = ["a", "a", "b", "b", "c"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [9, 9, 8, 8, 7]) == 1.0  # ids need not match, only the grouping
    assert grouping_accuracy(truth, [1, 1, 2, 2, 2]) == 0.4  # b and c merged: only the a lines are right
    assert grouping_accuracy(truth, [1, 4, 2, 2, 3]) == 0.6  # a split: both a lines wrong
    assert grouping_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        grouping_accuracy(["a"], [1, 2])


def test_bench_parsing_skips_without_data(tmp_path: Path, capsys) -> None:
    from logsense.models.bench import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--parsing", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "none")])
    assert run(args) == 2
    assert "skipped" in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.skipif(not (DATA / "loghub-2k" / "Apache" / "Apache_2k.log").exists(),
                    reason="loghub-2k samples not in ../shared/datasets")
def test_bench_parsing_on_loghub(tmp_path: Path) -> None:
    from logsense.models.bench.parsing import run_parsing

    assert run_parsing(tmp_path, DATA) == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["systems"]) == 11 and (tmp_path / "results.md").read_text().count("\n| ") == 12
    for name, r in report["systems"].items():
        assert r["header_parse_rate"] >= 0.95, name
        assert r["distinct_masked"] <= 3 * r["templates_truth"], name
    assert report["targets"]["grouping_accuracy"]["holds"], report["targets"]["grouping_accuracy"]
