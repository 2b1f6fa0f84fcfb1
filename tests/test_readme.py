"""The README cannot drift from the code: the settings table and every /api route are in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from logsense.server.settings import Settings, settings_table_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
REGENERATE = (
    "README.md's settings table differs from server/settings.py. Regenerate it and paste the output "
    "under '## Settings' in place of the old table:\n"
    "  .venv/bin/python -c \"from server.settings import settings_table_markdown as t; print(t(), end='')\""
)


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


def _api_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(METHOD, path) of every /api route: from the app's OpenAPI schema and from the routers themselves."""
    from logsense.server.api import anomalies, data, ingest, jobs, models, streams
    from logsense.server.app import create_app

    app = create_app(Settings(_env_file=None, data_dir=tmp_path / "data"))  # no lifespan: touches nothing
    found = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in ops
    }
    for router in (streams.router, ingest.router, data.router, models.router, anomalies.router, jobs.router):
        for route in router.routes:  # also routes left out of the schema
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def test_readme_has_the_settings_table(readme: str) -> None:
    assert settings_table_markdown() in readme, REGENERATE


def test_readme_documents_every_api_route(readme: str, tmp_path: Path) -> None:
    routes = _api_routes(tmp_path)
    assert len(routes) >= 17, sorted(routes)  # the routers were found at all
    rows = [line for line in readme.splitlines() if line.startswith("|")]
    missing = sorted(
        f"{method} {path}"
        for method, path in routes
        if not any(f"`{method}`" in row and f"`{path}`" in row for row in rows)
    )
    assert not missing, (
        "API routes missing from README.md's endpoint table (a row '| `METHOD` | `PATH` | what |' "
        f"under '## Using the API'): {missing}"
    )
    assert not (tmp_path / "data").exists(), "create_app must not touch the data directory before it starts"
