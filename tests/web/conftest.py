"""Fixtures of the web UI tests: a logged-in TestClient on a real app (SQLite, migrations)."""

from __future__ import annotations

import os
import re

import pytest
from fastapi.testclient import TestClient


@pytest.fixture(autouse=True)
def _no_logsense_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's LOGSENSE_* variables must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("LOGSENSE_"):
            monkeypatch.delenv(name)


CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str, next_url: str = "/") -> TestClient:
    page = client.get("/login")
    assert page.status_code == 200, page.text
    r = client.post("/login", data={"username": username, "password": password, "next": next_url,
                                    "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return client
