"""The kernel-VM tier's one guest run, shared by its test modules: booting
Debian's kernel under TCG takes minutes, so every scenario runs in it once."""

from __future__ import annotations

import os

import pytest

from tests.kernelvm.vm import GuestRun, kernel, run_guest, vng_command


@pytest.fixture(scope="session")
def guest() -> GuestRun:
    vmlinuz, vng = kernel(), vng_command()
    if vmlinuz is None or vng is None:
        why = "kernel-VM tier not prepared: run `make kernelvm-prepare` (tests/kernelvm/prepare.sh)"
        if os.environ.get("BROWNOUT_REQUIRE_KERNELVM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the kernel-VM tier needs root (namespaces in the guest)")
    run = run_guest(vmlinuz, vng)
    assert run.exit_code == 0 and "error" not in run.result, (
        f"guest failed (exit {run.exit_code}) after {run.seconds:.0f}s:"
        f" {run.result.get('error', '')}\n"
        f"{run.console[-3000:]}"
    )
    print(f"\nkernel-VM guest ran in {run.seconds:.0f}s")
    return run
