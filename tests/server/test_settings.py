from pathlib import Path

import pytest
from pydantic import ValidationError

from logsense.server.settings import Settings, settings_table_markdown


def test_defaults_put_sqlite_under_data_dir() -> None:
    s = Settings(_env_file=None)
    assert s.data_dir == Path("data")
    assert s.database_url == "sqlite:///data/logsense.db"
    assert s.dev_mode is False
    assert (s.max_lines_per_batch, s.max_line_bytes, s.max_request_bytes) == (10_000, 65_536, 16 * 2**20)
    assert s.nightly_cron == "0 2 * * *"
    assert s.incident_gap_seconds == 300


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOGSENSE_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("LOGSENSE_DEV_MODE", "true")
    env_file = tmp_path / ".env"
    env_file.write_text("LOGSENSE_PORT=9123\nLOGSENSE_DATABASE_URL=postgresql+psycopg://u:p@db/logsense\n")
    s = Settings(_env_file=env_file)
    assert s.data_dir == tmp_path / "d" and s.dev_mode is True and s.port == 9123
    assert s.database_url == "postgresql+psycopg://u:p@db/logsense"  # given URLs are kept as they are


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, port=0)


def test_settings_table_lists_every_field() -> None:
    table = settings_table_markdown()
    for name, field in Settings.model_fields.items():
        assert f"`LOGSENSE_{name.upper()}`" in table
        assert field.description and field.description in table
    assert "sqlite:///{data_dir}/logsense.db" in table
