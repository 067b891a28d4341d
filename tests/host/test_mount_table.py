"""The agent's cached mount table follows mounts and unmounts made after it was read."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.kernel import cgroups, mountinfo
from tests.host.scratch import tmpfs

pytestmark = pytest.mark.host


def _points() -> set[Path]:
    return {e.mount_point for e in mountinfo.read()}


def test_a_mount_and_an_unmount_are_seen_at_the_next_read(tmp_path: Path) -> None:
    before = _points()
    with tmpfs(tmp_path, "4m") as mnt:
        assert mnt not in before
        assert mnt in _points()
        assert _points() == before | {mnt}  # the cached answer, read twice
    assert _points() == before


def test_the_cached_table_is_the_kernels() -> None:
    assert mountinfo.read() == mountinfo.parse(mountinfo.SELF.read_text())
    assert cgroups.hierarchies() == cgroups.hierarchies(mountinfo.parse(mountinfo.SELF.read_text()))
