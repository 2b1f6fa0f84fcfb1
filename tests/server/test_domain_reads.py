"""The domain modules the routes call (`server.streams`, `lines`, `anomalies`, `reports`,
`channels`), on a migrated SQLite file and without an app: what the API and the pages both
rely on, each refusal as its own exception."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import Session

from logsense.server import anomalies, channels, lines, reports, streams
from logsense.server.db import make_engine, upgrade_database
from logsense.server.services import Services
from logsense.server.tables import Anomaly, Job, LogLine, StreamSettings, utcnow

from .conftest import make_settings


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = make_settings(tmp_path / "data")
    upgrade_database(settings.database_url)
    engine = make_engine(settings.database_url)
    yield Services(settings=settings, engine=engine, registry=None, metrics=None)  # type: ignore[arg-type]
    engine.dispose()


def _lines(db: Session, stream_id: int, n: int, severity: str = "normal") -> list[int]:
    rows = [LogLine(stream_id=stream_id, raw=f"line {i}", masked=f"line <NUM> {i % 3}", severity=severity)
            for i in range(n)]
    db.add_all(rows)
    db.commit()
    return [r.id for r in rows]


def test_streams_are_created_once_changed_as_a_whole_and_deleted(services: Services) -> None:
    with Session(services.engine) as db:
        app = streams.create(db, "app", StreamSettings())
        with pytest.raises(streams.StreamExists, match="a stream named 'app' already exists"):
            streams.create(db, "app", StreamSettings())
        streams.create(db, "api", StreamSettings())
        assert streams.names(db) == ["api", "app"]
        assert [s.name for s in streams.all_streams(db, "app")] == ["app"]
        with pytest.raises(ValidationError) as refused:
            streams.update_settings(db, app, {"rapid_k": "many"})
        assert refused.value.errors()[0]["loc"] == ("rapid_k",)
        assert streams.update_settings(db, app, {"train_mode": False}).config().train_mode is False
        assert not streams.has_data(db, app.id)
        db.add(Job(stream_id=app.id, kind="train"))
        db.commit()
        assert streams.has_data(db, app.id)
        streams.delete(db, app)
        assert streams.by_name(db, "app") is None and streams.names(db) == ["api"]


def test_lines_around_a_line_the_tail_and_rapid_verdicts_that_keep_an_answer(services: Services) -> None:
    with Session(services.engine) as db:
        sid = streams.create(db, "app", StreamSettings()).id
        ids = _lines(db, sid, 10)
        assert [x.id for x in lines.before(db, sid, ids[5], 2)] == [ids[4], ids[3]]
        assert [x.id for x in lines.after(db, sid, ids[5], 2)] == [ids[6], ids[7]]
        assert [x.id for x in lines.after(db, sid, ids[5], 2, inclusive=True)] == [ids[5], ids[6]]
        assert [x.id for x in lines.before(db, sid, None, 3)] == ids[:-4:-1]
        assert lines.totals(db) == (10, 3)
        assert lines.raws(db, ids[:2]) == {ids[0]: "line 0", ids[1]: "line 1"} and lines.raws(db, []) == {}
        line, stream = lines.with_stream(db, ids[0])
        assert (line.id, stream.name) == (ids[0], "app") and lines.with_stream(db, 10**9) is None

        pending = _lines(db, sid, 3, severity="pending")
        assert [r.id for r in lines.rapid_pending_lines(db, sid, 10)] == pending
        db.get(LogLine, pending[0]).severity = "normal"  # an operator answered it meanwhile
        db.commit()
        verdicts = [{"_id": i, "rapid_score": 0.9, "rapid_flag": True, "severity": "watch"} for i in pending]
        assert lines.save_rapid_verdicts(db, verdicts) == set(pending[1:])
        db.commit()
        assert [x.severity for x in lines.verdicts(db, sid, pending[0] - 1, 10)] == ["normal", "watch", "watch"]
        assert [x.id for x in lines.verdicts(db, sid, 0, 10, "watch")] == pending[1:]


def test_one_filter_picks_anomalies_for_the_list_the_queue_and_the_counts(services: Services) -> None:
    now = utcnow()
    with Session(services.engine) as db:
        sid = streams.create(db, "app", StreamSettings()).id
        ids = _lines(db, sid, 3)
        db.add_all([Anomaly(stream_id=sid, line_id=ids[0], template_id=7, severity="danger", created_at=now),
                    Anomaly(stream_id=sid, line_id=ids[1], severity="watch", status="refuted", created_at=now),
                    Anomaly(stream_id=sid, line_id=ids[2], severity="watch", created_at=now - timedelta(hours=2))])
        db.commit()
        assert anomalies.count(db, anomalies.Match()) == 2
        assert anomalies.count(db, anomalies.Match(status="any", since=now - timedelta(hours=1))) == 2
        assert anomalies.count(db, anomalies.Match(stream="other")) == 0
        listed = anomalies.listed(db, anomalies.Match(severity="danger"), 10)
        assert [(a.template_id, s.name, line.raw) for a, s, line in listed] == [(7, "app", "line 0")]
        newest = anomalies.newest_rows(db, anomalies.Match(status="any"), 2)
        assert [r.line_id for r in newest] == [ids[2], ids[1]]
        assert reports.open_counts(db) == {"danger": 1, "watch": 1, "total": 2} and reports.open_total(db) == 2
        assert reports.open_by_stream(db) == {(sid, "danger"): 1, (sid, "watch"): 1}
        untemplated = newest[0].id
    with pytest.raises(LookupError, match="no anomaly with id 999"):
        anomalies.mute(services, [999], now, "dev")
    with pytest.raises(anomalies.NoTemplate):
        anomalies.mute(services, [untemplated], now, "dev")


def test_channels_refuse_a_taken_name_an_unknown_id_and_a_bad_change(services: Services) -> None:
    hook = channels.ChannelIn(name="hook", kind="webhook", url="https://example.test/x", secret="s" * 16)
    out = channels.create(services, hook)
    assert out.has_secret and out.url == "https://example.test/x"
    with pytest.raises(channels.ChannelExists, match="a channel named 'hook' already exists"):
        channels.create(services, hook)
    with pytest.raises(channels.NoChannel, match="no alert channel with id 99"):
        channels.update(services, 99, channels.ChannelPatch(enabled=False))
    with pytest.raises(ValidationError):
        channels.update(services, out.id, channels.ChannelPatch(kind="slack"))  # a slack channel takes no secret
    assert channels.update(services, out.id, channels.ChannelPatch(enabled=False)).enabled is False
    with Session(services.engine) as db:
        assert [c.name for c in channels.listed(db)] == ["hook"]
        assert channels.outbox(db) == [] and channels.outbox_summary(db) == ({}, {})
    assert channels.delete(services, out.id) == "hook"
    with pytest.raises(channels.NoChannel):
        channels.send_test(services, out.id)
