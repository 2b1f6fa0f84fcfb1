"""Artifacts are replaced whole: a failed write leaves the old one, a folder swap leaves no gap."""

from __future__ import annotations

import json

import pytest

from logsense.models.atomic import atomic_dir, atomic_path, write_json


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path) -> None:
    target = tmp_path / "meta.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{ half")
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_a_folder_is_swapped_through_a_link_and_the_old_one_removed(tmp_path) -> None:
    target = tmp_path / "rapid"
    target.mkdir()  # the older layout: a real folder
    (target / "config.json").write_text("old")
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert target.is_symlink() and (target / "config.json").read_text() == "new"
    first = target.resolve()
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("newer")
    assert (target / "config.json").read_text() == "newer" and not first.exists()
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "config.json").write_text("torn")
            raise RuntimeError("crash")
    assert (target / "config.json").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".rapid.")) == ["rapid"]
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".rapid.")]) == 1  # the live folder only
