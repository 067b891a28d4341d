"""What a team declares of its practice (`--practice FILE`): the parts the
history cannot show (an on-call rotation, postmortems), shown as declared,
and game days held outside Brownout, counted like recorded ones.

    practice:
      on-call: SRE primary, PagerDuty, weekly hand-over
      postmortems: blameless, within five workdays
      game-days: [2026-10-08, 2026-11-05]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from controller.errors import ConfigError

MAX_TEXT = 500


@dataclass(frozen=True)
class Practice:
    declared: dict[str, str] = field(default_factory=dict)
    gamedays: tuple[date, ...] = ()


def parse(raw: Any, where: str) -> Practice:
    if not isinstance(raw, dict) or not isinstance(raw.get("practice"), dict):
        raise ConfigError(where, "expected a mapping with practice: {...}")
    declared: dict[str, str] = {}
    gamedays: list[date] = []
    for key, value in raw["practice"].items():
        at = f"{where}: practice.{key}"
        if key == "game-days":
            if not isinstance(value, list):
                raise ConfigError(at, "expected a list of dates (YYYY-MM-DD)")
            for d in value:
                try:
                    gamedays.append(d if isinstance(d, date) else date.fromisoformat(str(d)))
                except ValueError:
                    raise ConfigError(at, f"{d!r} is not a date (YYYY-MM-DD)") from None
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            if len(str(value)) > MAX_TEXT:
                raise ConfigError(at, f"at most {MAX_TEXT} characters")
            declared[str(key)] = str(value)
        else:
            raise ConfigError(at, "expected text (what the team does), e.g. on-call: weekly")
    return Practice(declared, tuple(sorted(gamedays)))
