"""The journal: atomic records, no stray temp files, removal needs no space."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.core.journal import Journal

pytestmark = pytest.mark.unit


def test_write_load_remove_roundtrip(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.write("fault-1", {"kind": "cpu", "undo": None})
    j.write("fault-1", {"kind": "cpu", "undo": {"workers": [{"pid": 1}]}})
    j.write("fault-2", {"kind": "cpu", "undo": None})
    records = j.load()
    assert set(records) == {"fault-1", "fault-2"}
    assert records["fault-1"]["undo"] == {"workers": [{"pid": 1}]}
    assert records["fault-1"]["version"] == 1
    assert j.fault_ids() == ["fault-1", "fault-2"]
    j.remove("fault-1")
    j.remove("fault-1")  # idempotent
    assert j.fault_ids() == ["fault-2"]
    assert sorted(os.listdir(j.dir)) == ["fault-2.json"]


def test_stray_temp_files_are_cleaned_and_corrupt_records_set_aside(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    (j.dir / ".tmp-fault-9-abcd").write_text("{half")
    (j.dir / "fault-8.json").write_text("{not json")
    j.write("fault-7", {"kind": "cpu"})
    assert set(j.load()) == {"fault-7"}
    assert sorted(os.listdir(j.dir)) == ["fault-7.json", "fault-8.json.corrupt"]


@pytest.mark.parametrize("bad", ["", "../etc/passwd", ".hidden", "a/b"])
def test_unsafe_ids_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        Journal(tmp_path).write(bad, {"kind": "cpu"})


@pytest.mark.parametrize("durable", [True, False])
def test_only_durable_records_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    """Records of faults that outlive a reboot are fsynced (file and directory);
    the others are not, yet read back the same."""
    j = Journal(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    j.write("fault-1", {"kind": "disk", "undo": {"files": ["/x"]}}, durable=durable)
    assert len(synced) == (2 if durable else 0)
    assert j.load()["fault-1"]["undo"] == {"files": ["/x"]}
    j.remove("fault-1", durable=durable)
    assert len(synced) == (3 if durable else 0)
    assert j.fault_ids() == []
