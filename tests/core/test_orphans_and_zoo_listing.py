"""Issue 19, smaller items: orphan temp files of killed writers are removed; `zoo list` shows only
entries `zoo show` accepts; JSON-safe helpers."""
from __future__ import annotations

import os
import subprocess
import sys

from kadapt.core.fileio import atomic_write_text


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphan_tmp_files_of_dead_writers_are_removed(tmp_path):
    dead = tmp_path / f".out.txt.{_dead_pid()}-abc123.tmp"
    dead.write_text("half")
    alive = tmp_path / f".out.txt.{os.getpid()}-def456.tmp"  # a live writer's file is left alone
    alive.write_text("busy")
    other = tmp_path / f".other.txt.{_dead_pid()}-x.tmp"
    other.write_text("not ours")
    atomic_write_text(tmp_path / "out.txt", "done")
    assert (tmp_path / "out.txt").read_text() == "done"
    assert not dead.exists() and alive.exists() and other.exists()


def test_zoo_list_shows_only_what_zoo_show_accepts(tmp_path):
    from kadapt.store.zoo import Zoo

    zoo_dir, outside = tmp_path / "zoo", tmp_path / "outside"
    (outside / "p").mkdir(parents=True)
    (outside / "p" / "kadapt_config.json").write_text("{}")
    zoo_dir.mkdir()
    os.symlink(outside / "p", zoo_dir / "link")
    (zoo_dir / "naïve").mkdir()
    (zoo_dir / "naïve" / "kadapt_config.json").write_text("{}")
    entries = Zoo(zoo_dir).entries()
    assert [e["name"] for e in entries] == ["link", "naïve"]
    assert "escapes the zoo folder" in entries[0]["error"]
    assert "is not allowed" in entries[1]["error"]
    assert Zoo(zoo_dir).by_backbone() == {}
