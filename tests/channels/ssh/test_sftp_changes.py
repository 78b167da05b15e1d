"""Check, then act: every mutating SFTP request, through the real ``sftp`` client, against planted links.

Links are planted in the file area by something other than SFTP (the meter's
own processes, a shell on the controller): symbolic links to files and folders
inside and outside the area, dangling ones, hard links to files inside and
outside (folders cannot be hard-linked), and a FIFO.  Every request that meets
one, at its target or in a parent folder, is refused and recorded, and nothing
changes on disk: not the files outside (bytes, mode, size, times, link count),
and not the area either.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from meterd.seclog import EventType, Record
from tests.channels.ssh.harness import Server, area

USER = "engineer1"
UPLOAD = "uploaded through sftp, longer than the files it must not touch\n"


@dataclass(frozen=True)
class Trap:
    outside: Path
    local: Path


@pytest.fixture(scope="module")
def trap(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Trap:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("outside secret\n")
    (outside / "hard.txt").write_text("hard\n")  # shorter than UPLOAD, so a resumed put goes ahead
    (outside / "dir").mkdir()
    (outside / "dir" / "inner.txt").write_text("inner\n")
    (outside / "empty").mkdir()
    data = area(server) / "data"
    (data / "plain.txt").write_text("plain\n")
    (data / "twin.txt").write_text("twin\n")
    (data / "sub").mkdir()
    (data / "sub" / "file.txt").write_text("in sub\n")
    os.link(outside / "hard.txt", data / "hl")
    os.link(data / "twin.txt", data / "hl_in")
    os.symlink(outside / "secret.txt", data / "sl_file")
    os.symlink(outside / "dir", data / "sl_dir")
    os.symlink(outside / "empty", data / "sl_empty")
    os.symlink(outside / "new.txt", data / "sl_new")  # dangling: a create through it would make new.txt
    os.symlink("plain.txt", data / "sl_in_file")
    os.symlink("sub", data / "sl_in_dir")
    os.mkfifo(data / "fifo")
    local = tmp_path_factory.mktemp("local")
    (local / "up.txt").write_text(UPLOAD)
    return Trap(outside, local)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything below ``root`` (links not followed): content, mode, size, times but atime, links, inode."""
    state: dict[str, tuple[object, ...]] = {}

    def visit(path: Path) -> None:
        info = os.lstat(path)
        content: object = None
        if stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        elif stat.S_ISLNK(info.st_mode):
            content = os.readlink(path)
        state[str(path)] = (
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
            info.st_nlink,
            info.st_ino,
            info.st_uid,
            info.st_gid,
            content,
        )
        if stat.S_ISDIR(info.st_mode):
            for name in sorted(os.listdir(path)):
                visit(path / name)

    visit(root)
    return state


def changed(before: dict[str, tuple[object, ...]], after: dict[str, tuple[object, ...]]) -> dict[str, object]:
    """The paths whose state differs (or that came or went), with their state before and after."""
    return {
        k: (before.get(k), after.get(k))
        for k in before.keys() | after.keys()
        if before.get(k) != after.get(k)
    }


def refusals(records: list[Record]) -> list[Record]:
    return [
        r
        for r in records
        if r.principal == USER and r.event is EventType.PERMISSION_DENIED and "refused" in r.detail
    ]


# (batch command, why the refusal is recorded); {up} is the local file to upload.
REFUSED = [
    # writes: put, resumed put (append), put with fsync and with attributes, server-side copy
    ("put {up} /data/hl", "not_regular"),
    ("put -f {up} /data/hl", "not_regular"),
    ("put -p {up} /data/hl", "not_regular"),
    ("put -a {up} /data/hl", "not_regular"),
    ("reput {up} /data/hl", "not_regular"),
    ("put {up} /data/hl_in", "not_regular"),
    ("put {up} /data/fifo", "not_regular"),
    ("put {up} /data/sl_file", "symlink"),
    ("put -a {up} /data/sl_file", "symlink"),
    ("put {up} /data/sl_new", "symlink"),
    ("put {up} /data/sl_in_file", "symlink"),
    ("put {up} /data/sl_dir/new.txt", "symlink"),
    ("put {up} /data/sl_dir/inner.txt", "symlink"),
    ("put {up} /data/sl_in_dir/new.txt", "symlink"),
    ("copy /data/plain.txt /data/hl", "not_regular"),
    ("copy /data/plain.txt /data/sl_file", "symlink"),
    ("copy /data/plain.txt /data/sl_new", "symlink"),
    # attributes
    ("chmod 600 /data/hl", "not_regular"),
    ("chmod -h 600 /data/hl", "not_regular"),
    ("chmod 600 /data/hl_in", "not_regular"),
    ("chmod 600 /data/fifo", "not_regular"),
    ("chmod 600 /data/sl_file", "symlink"),
    ("chmod -h 600 /data/sl_file", "symlink"),
    ("chmod 700 /data/sl_dir", "symlink"),
    ("chmod 600 /data/sl_dir/inner.txt", "symlink"),
    ("chmod 700 /data", "area_folder"),
    ("chown 4321 /data/plain.txt", "ownership"),
    ("chown 4321 /data/hl", "ownership"),
    ("chgrp 4321 /data/sub", "ownership"),
    ("chgrp -h 4321 /data/sl_file", "symlink"),
    # removal
    ("rm /data/hl", "not_regular"),
    ("rm /data/hl_in", "not_regular"),
    ("rm /data/fifo", "not_regular"),
    ("rm /data/sl_file", "symlink"),
    ("rm /data/sl_new", "symlink"),
    ("rm /data/sl_dir", "symlink"),
    ("rm /data/sl_dir/inner.txt", "symlink"),
    ("rmdir /data/sl_empty", "symlink"),
    ("rmdir /data/sl_in_dir", "symlink"),
    ("rmdir /data", "area_folder"),
    # renames, source and target
    ("rename /data/hl /data/moved", "not_regular"),
    ("rename /data/hl_in /data/moved", "not_regular"),
    ("rename /data/fifo /data/moved", "not_regular"),
    ("rename /data/sl_file /data/moved", "symlink"),
    ("rename /data/sl_dir /data/moved", "symlink"),
    ("rename /data/sl_dir/inner.txt /data/moved", "symlink"),
    ("rename /data/plain.txt /data/hl", "not_regular"),
    ("rename /data/plain.txt /data/hl_in", "not_regular"),
    ("rename /data/plain.txt /data/sl_file", "symlink"),
    ("rename /data/plain.txt /data/sl_new", "symlink"),
    ("rename /data/plain.txt /data/sl_in_file", "symlink"),
    ("rename /data/plain.txt /data/sl_dir/moved", "symlink"),
    ("rename /data/sub /data/sl_empty", "symlink"),
    ("rename /data/sub /data/sl_in_dir", "symlink"),
    # folders and links
    ("mkdir /data/sl_dir/newdir", "symlink"),
    ("mkdir /data/sl_new", "symlink"),
    ("ln -s /data/plain.txt /data/newlink", "links_not_supported"),
    ("symlink /data/sl_dir /data/newlink", "links_not_supported"),
    ("ln /data/plain.txt /data/newhard", "links_not_supported"),
    ("ln /data/hl /data/newhard", "links_not_supported"),
]


@pytest.mark.parametrize(("command", "why"), REFUSED)
def test_a_refused_change_changes_nothing(server: Server, trap: Trap, command: str, why: str) -> None:
    before = {**snapshot(trap.outside), **snapshot(area(server))}
    mark = server.mark()
    result = server.sftp(USER, command.format(up=trap.local / "up.txt") + "\n")
    assert result.returncode != 0, result.stdout
    assert changed(before, {**snapshot(trap.outside), **snapshot(area(server))}) == {}
    assert not (trap.outside / "new.txt").exists()
    refused = refusals(
        server.until(mark, lambda rs: any(r.detail.get("refused") == why for r in refusals(rs)))
    )
    assert why in {r.detail.get("refused") for r in refused}, [r.detail for r in refused]


def test_allowed_changes_act_on_the_checked_file(server: Server, trap: Trap) -> None:
    """Overwrite (cut only after the checks), resume, attributes, fsync, copy and replace still do their job."""
    work = area(server) / "data" / "work"
    work.mkdir()
    (work / "long.txt").write_text("a text longer than the short upload\n")
    (work / "partial.txt").write_text(UPLOAD[:10])
    (work / "old.txt").write_text("old\n")
    local = trap.local
    (local / "short.txt").write_text("short\n")
    (local / "kept.txt").write_text("kept\n")
    os.chmod(local / "kept.txt", 0o604)
    os.utime(local / "kept.txt", (1_700_000_000, 1_700_000_000))
    batch = (
        f"put {local}/short.txt /data/work/long.txt\n"
        f"reput {local}/up.txt /data/work/partial.txt\n"
        f"put -p {local}/kept.txt /data/work/kept.txt\n"
        f"put -f {local}/up.txt /data/work/synced.txt\n"
        "copy /data/work/old.txt /data/work/copy.txt\n"
        "rename /data/work/copy.txt /data/work/synced.txt\n"
        "chmod 600 /data/work/old.txt\n"
        "chmod 700 /data/work\n"
    )
    result = server.sftp(USER, batch)
    assert result.returncode == 0, result.stderr
    assert (work / "long.txt").read_text() == "short\n"
    assert (work / "partial.txt").read_text() == UPLOAD
    kept = os.stat(work / "kept.txt")
    assert (stat.S_IMODE(kept.st_mode), kept.st_mtime) == (0o604, 1_700_000_000)
    assert (work / "synced.txt").read_text() == "old\n"
    assert not (work / "copy.txt").exists()
    assert stat.S_IMODE(os.stat(work / "old.txt").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(work).st_mode) == 0o700
