"""Pure logic of the resource faults: mounts, cgroups, quotas, reserves, fill sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.core.errors import InvalidArgument, ResourceExhausted
from agent.core.limits import Limits
from agent.faults.resource.cpu import duty_percent
from agent.faults.resource.disk import Amount, correction, fill_size
from agent.faults.resource.disk import reserve_bytes as disk_reserve
from agent.faults.resource.io import check_sizes
from agent.faults.resource.memory import PAGE, size_leak
from agent.faults.resource.memory import reserve_bytes as memory_reserve
from agent.kernel import cgroups, meminfo, mountinfo
from agent.kernel.fs import Usage
from agent.workers.memory_leak import Leak
from brownout.v1 import agent_pb2 as pb
from controller.cli import faultflags
from controller.cli import main as cli

pytestmark = pytest.mark.unit

MIB = 1024 * 1024
GIB = 1024 * MIB

HYBRID = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 7:0 / /mnt/with\\040space rw,relatime shared:5 - ext4 /dev/loop0 rw
51 27 0:40 / /mnt/with\\040space/inner rw - tmpfs none rw
52 27 0:41 / /mnt/with\\040space/inner ro - tmpfs over ro
"""


# ----------------------------------------------------------------- mountinfo


def test_mountinfo_unescapes_and_the_longest_and_latest_mount_wins() -> None:
    entries = mountinfo.parse(HYBRID)
    assert entries[6].mount_point == Path("/mnt/with space")
    assert entries[6].options == frozenset({"rw", "relatime"})
    assert mountinfo.containing(entries, Path("/mnt/with space/a/b")).mount_id == 50
    shadowing = mountinfo.containing(entries, Path("/mnt/with space/inner/x"))
    assert shadowing.mount_id == 52 and shadowing.read_only
    assert mountinfo.containing(entries, Path("/etc")).mount_id == 27
    with pytest.raises(ValueError, match="malformed"):
        mountinfo.parse_line("1 2 3")


# ------------------------------------------------------------------- cgroups


def test_hierarchies_of_a_hybrid_layout() -> None:
    hier = cgroups.hierarchies(mountinfo.parse(HYBRID))
    assert [(h.mount.name, h.version) for h in hier] == [
        ("cpu,cpuacct", 1),
        ("memory", 1),
        ("systemd", 1),
        ("unified", 2),
    ]
    assert hier[0].controllers == {"cpu", "cpuacct"}
    assert hier[2].controllers == {"name=systemd"}


def test_proc_cgroup_maps_to_each_hierarchy() -> None:
    hier = cgroups.hierarchies(mountinfo.parse(HYBRID))
    text = "4:memory:/app\n2:cpu,cpuacct:/app/web\n1:name=systemd:/sys\n0::/sys\n"
    placement = cgroups.parse_proc_cgroup(text, hier)
    assert [str(cg) for cg in placement] == [
        "/sys/fs/cgroup/memory/app",
        "/sys/fs/cgroup/cpu,cpuacct/app/web",
        "/sys/fs/cgroup/systemd/sys",
        "/sys/fs/cgroup/unified/sys",
    ]


def test_a_namespaced_mount_shows_only_its_subtree() -> None:
    h = cgroups.Hierarchy(Path("/sys/fs/cgroup"), "/kubepods/pod1", 2, frozenset())
    assert h.dir_of("/kubepods/pod1/c") == Path("/sys/fs/cgroup/c")
    assert h.dir_of("/kubepods/pod1") == Path("/sys/fs/cgroup")
    assert h.dir_of("/other") is None


def fake_tree(tmp_path: Path) -> list[cgroups.Hierarchy]:
    v1 = cgroups.Hierarchy(tmp_path / "cpu", "/", 1, frozenset({"cpu"}))
    mem = cgroups.Hierarchy(tmp_path / "memory", "/", 1, frozenset({"memory"}))
    v2 = cgroups.Hierarchy(tmp_path / "unified", "/", 2, frozenset())
    files = {
        "cpu/cpu.cfs_quota_us": "-1",
        "cpu/cpu.cfs_period_us": "100000",
        "cpu/app/cpu.cfs_quota_us": "150000",
        "cpu/app/cpu.cfs_period_us": "100000",
        "cpu/app/web/cpu.cfs_quota_us": "-1",
        "cpu/app/web/cpu.cfs_period_us": "100000",
        "memory/app/web/memory.limit_in_bytes": "9223372036854771712",
        "memory/app/memory.limit_in_bytes": str(GIB),
        "unified/cgroup.controllers": "cpu memory",
        "unified/app/cgroup.controllers": "cpu memory",
        "unified/app/cgroup.subtree_control": "cpu",
        "unified/app/cpu.max": "max 100000",
        "unified/app/memory.max": "max",
        "unified/app/web/cgroup.controllers": "cpu",
        "unified/app/web/cgroup.subtree_control": "",
        "unified/app/web/cpu.max": "50000 100000",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return [v1, mem, v2]


def test_find_by_cgroup_path_or_by_directory(tmp_path: Path) -> None:
    hier = fake_tree(tmp_path)
    by_path = cgroups.find("/app/web", hier)
    assert [cg.dir for cg in by_path] == [
        tmp_path / "cpu/app/web",
        tmp_path / "memory/app/web",
        tmp_path / "unified/app/web",
    ]
    assert cgroups.find("app/web", hier) == by_path
    assert cgroups.find(str(tmp_path / "memory/app/web"), hier) == by_path
    with pytest.raises(ValueError, match="no cgroup /nope"):
        cgroups.find("/nope", hier)
    with pytest.raises(ValueError, match=r"\.\."):
        cgroups.find("/app/../../etc", hier)


def test_cpu_quota_is_the_tightest_of_the_cgroup_and_its_ancestors(tmp_path: Path) -> None:
    hier = fake_tree(tmp_path)
    v1_only = tuple(cg for cg in cgroups.find("/app/web", hier) if cg.hierarchy.version == 1)
    assert cgroups.cpu_quota(v1_only) == 1.5  # from /app
    assert cgroups.cpu_quota(cgroups.find("/app/web", hier)) == 0.5  # v2 cpu.max of web
    assert cgroups.cpu_quota(cgroups.find("/", hier)) is None


def test_memory_limit_and_attach_problems(tmp_path: Path) -> None:
    hier = fake_tree(tmp_path)
    assert cgroups.memory_limit(cgroups.find("/app/web", hier)) == GIB
    # v2's no-internal-process rule: /app has controllers enabled for its children.
    problem = cgroups.attach_problem(cgroups.find("/app", hier))
    assert problem is not None and "leaf" in problem
    assert cgroups.attach_problem(cgroups.find("/app/web", hier)) is None


def test_cpu_lists() -> None:
    assert cgroups.parse_cpu_list("0-2,5, 7") == {0, 1, 2, 5, 7}
    assert cgroups.parse_cpu_list("") == frozenset()


@pytest.mark.parametrize(
    ("load", "cores", "quota", "duty"),
    [
        (50, 1, None, 50),  # no quota: percent of each core
        (60, 1, 0.5, 30),  # 60% of half a CPU
        (60, 2, 1.5, 45),  # 60% of 1.5 CPUs over 2 cores
        (80, 2, 4.0, 80),  # a quota above the cores does not raise the load
    ],
)
def test_cpu_duty_is_relative_to_the_quota(
    load: float, cores: int, quota: float | None, duty: float
) -> None:
    assert duty_percent(load, cores, quota) == pytest.approx(duty)


# -------------------------------------------------------------------- memory


def test_memory_reserve_is_the_larger_of_bytes_and_percent() -> None:
    assert memory_reserve(24 * GIB, Limits()) == int(24 * GIB * 0.05)
    assert memory_reserve(2 * GIB, Limits()) == 256 * MIB


def test_leak_fits_is_capped_or_refused() -> None:
    fits = size_leak("memory.bytes", 100 * MIB, 2 * GIB, 0, 256 * MIB)
    assert (fits.bytes, fits.capped) == (100 * MIB, False)
    capped = size_leak("memory.bytes", 4 * GIB, 2 * GIB, 512 * MIB, 256 * MIB)
    assert (capped.bytes, capped.requested, capped.capped) == (GIB + 256 * MIB, 4 * GIB, True)
    assert capped.bytes % PAGE == 0
    with pytest.raises(ResourceExhausted, match=r"^memory.percent: refused.*memory reserve"):
        size_leak("memory.percent", MIB, 300 * MIB, 100 * MIB, 256 * MIB)


def test_leak_worker_touches_exactly_what_it_is_asked(tmp_path: Path) -> None:
    before = meminfo.rss_anon(os.getpid()) or 0
    leak = Leak(5 * MIB + 1)
    assert leak.total == 5 * MIB + PAGE
    leak.grow(3 * MIB)
    leak.grow(2 * MIB + PAGE)
    assert leak.touched == leak.total
    grown = (meminfo.rss_anon(os.getpid()) or 0) - before
    assert grown >= 5 * MIB, f"only {grown} bytes became resident"


def test_meminfo_parses_kib() -> None:
    info = meminfo.parse("MemTotal:  1024 kB\nHugePages_Total:  3\nBad line\n")
    assert info == {"MemTotal": 1024 * 1024, "HugePages_Total": 3}


# ---------------------------------------------------------------------- disk

FS = Usage(total=1000 * 4096, free=800 * 4096, avail=800 * 4096, block=4096)


def test_disk_reserve_is_the_larger_of_bytes_and_percent() -> None:
    assert disk_reserve(GIB, Limits()) == 100 * MIB
    assert disk_reserve(100 * GIB, Limits()) == GIB


def test_fill_sizes_for_each_amount() -> None:
    percent = fill_size(Amount("fill_percent", 50), FS, 0, "/m")
    assert percent.bytes == 300 * 4096 and not percent.capped
    assert fill_size(Amount("write_bytes", 8192), FS, 0, "/m").bytes == 8192
    assert fill_size(Amount("leave_free_bytes", 100 * 4096), FS, 0, "/m").bytes == 700 * 4096


def test_fill_is_capped_at_the_reserve_and_refused_without_room() -> None:
    capped = fill_size(Amount("fill_percent", 100), FS, 50 * 4096, "/m")
    assert (capped.bytes, capped.requested, capped.capped) == (750 * 4096, 800 * 4096, True)
    full = Usage(total=FS.total, free=10 * 4096, avail=10 * 4096, block=4096)
    with pytest.raises(ResourceExhausted, match=r"^disk.write_bytes: refused.*allow_full"):
        fill_size(Amount("write_bytes", 4096), full, 50 * 4096, "/m")


def test_fill_targets_already_met_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match=r"already 20.00% used"):
        fill_size(Amount("fill_percent", 10), FS, 0, "/m")
    with pytest.raises(InvalidArgument, match=r"^disk.leave_free_bytes: .* not more than"):
        fill_size(Amount("leave_free_bytes", 900 * 4096), FS, 0, "/m")


def test_correction_tops_up_or_gives_back_whole_blocks() -> None:
    # Metadata took 3 blocks more than expected: give them back.
    after = Usage(total=FS.total, free=497 * 4096, avail=497 * 4096, block=4096)
    assert correction(Amount("fill_percent", 50), after, 0, 300 * 4096) == -3 * 4096
    short = Usage(total=FS.total, free=505 * 4096, avail=505 * 4096, block=4096)
    assert correction(Amount("fill_percent", 50), short, 0, 295 * 4096) == 5 * 4096
    assert correction(Amount("fill_percent", 50), short, 503 * 4096, 295 * 4096) == 2 * 4096
    assert correction(Amount("write_bytes", 1), short, 0, 1) == 0


# ------------------------------------------------------------------------ io


def test_io_sizes_and_defaults() -> None:
    assert check_sizes(1, 0, 0, False) == (4096, 64 * MIB)
    assert check_sizes(4, 65536, MIB, True) == (65536, MIB)
    for args, field in [
        ((0, 4096, MIB, False), "io.workers"),
        ((1, 511, MIB, False), "io.block_size_bytes"),
        ((1, 1000, 1000 * 8, True), "io.block_size_bytes"),
        ((1, 4096, 4095, False), "io.bytes_per_worker"),
        ((1, 4096, 4096 * 3 + 1, False), "io.bytes_per_worker"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            check_sizes(*args)
        assert err.value.field == field


# ----------------------------------------------------------------------- CLI


def build(*argv: str) -> tuple[pb.FaultSpec, pb.Target]:
    args = cli.build_parser().parse_args(["inject", *argv, "--duration", "10s"])
    return faultflags.build(args)


def test_cli_builds_each_resource_kind() -> None:
    spec, target = build("memory", "--size", "1GiB", "--rate", "256MiB/s", "--cgroup", "/app")
    assert str(spec).split() == ["memory", "{", "bytes:", "1073741824", "rate_mib_per_second:",
                                 "256", "}"]  # fmt: skip
    assert str(target).strip() == 'cgroup: "/app"'
    spec, _ = build("memory", "--percent", "30%")
    assert "percent: 30" in str(spec)
    spec, _ = build("disk", "--path", "/var", "--fill", "90%", "--allow-full")
    assert "fill_percent: 90" in str(spec) and "allow_full: true" in str(spec)
    spec, _ = build("disk", "--path", "/var", "--leave", "500MiB")
    assert f"leave_free_bytes: {500 * MIB}" in str(spec)
    spec, target = build(
        "io", "--path", "/var", "--workers", "3", "--mode", "mixed", "--block-size", "64KiB",
        "--direct", "--pid", "42",
    )  # fmt: skip
    text = str(spec)
    assert "workers: 3" in text and "IO_MODE_MIXED" in text and "block_size_bytes: 65536" in text
    assert str(target).strip() == "pid: 42"
    spec, target = build("cpu", "--cores", "1", "--load", "50", "--pid", "7")
    assert str(target).strip() == "pid: 7"
