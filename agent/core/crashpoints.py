"""Test-only crash points for the reliability suite (tests/reliability).

When BROWNOUT_TEST_CRASH_AT names a step, the agent SIGKILLs itself there;
unset (always, outside tests) this does nothing. Steps: after_intent (intent
journaled), after_checkpoint (undo journaled, kernel not yet changed),
after_apply, after_revert (reverted, record not yet removed).
"""

from __future__ import annotations

import os
import signal

_CRASH_AT = os.environ.get("BROWNOUT_TEST_CRASH_AT", "")


def crash_point(step: str) -> None:
    if step == _CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)
