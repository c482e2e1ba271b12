"""A small real filesystem that tests can fill up, and helpers to read SQLite's own state.

A full disk is a tmpfs of a few MiB that the test fills with a filler file until the kernel
answers ENOSPC, and "frees" by deleting the filler: SQLite then meets the real error from a
real write (unlike ``PRAGMA max_page_count``, which fails earlier, at page allocation).
Mounting needs CAP_SYS_ADMIN, so tests using :func:`tiny_disk` skip where it is refused.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER = ".filler"


@contextmanager
def tiny_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created) for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(disk: Path) -> int:
    """Take every free byte of ``disk`` (a :func:`tiny_disk`); returns the bytes taken."""
    fd = os.open(disk / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    taken = 0
    try:
        for size in (1 << 20, 4096, 1):  # big writes first, then whatever is left
            while True:
                try:
                    taken += os.write(fd, b"\0" * size)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return taken


def free(disk: Path) -> None:
    """Give back what :func:`fill` took."""
    (disk / FILLER).unlink()


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a database file, from a fresh read-only connection."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()
