"""One task that sends every lease datagram of a fleet (brownout/heartbeat.py),
instead of one coroutine, timer and wait per lease.

Leases are grouped into beats: one agent (its heartbeat address), one key (one
holder), one period. A beat's leases are renewed by one datagram (up to 64 of
them; more make another beat), sent one period after the previous round was
answered, so a wedged controller still stops renewing. A round that gets no
answer is sent again every RESEND with a new counter. A beat whose leases were
last renewed two periods ago (by the send time of the datagram answered) tells
each of them to fall back to gRPC: that leaves the TTL's last third to open a
stream and renew there. Only while this loop itself runs late (so its sends
went out late, and a stream could not be opened in time either) do the
datagrams go on instead, until the lease may have run out.

The cost of a heartbeat is then what the protocol costs (a MAC each way, a
send, a read) plus a place on a timing wheel (wheel.py), which is what lets
one core keep 10,000 leases. A beat's lease ids are packed once, when its
members change, not at every send.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from brownout import heartbeat as hb
from controller.agents.datagrams import RESEND, DatagramPort, Key
from controller.agents.loop import cancel
from controller.agents.wheel import Wheel

TICK = 0.005  # the least sleep between sending rounds
IDLE = 0.1  # the most


class Member(Protocol):
    """A lease kept by the keeper (LeaseHold)."""

    lease_id: str
    address: str  # the agent's, as the fleet names it
    confirmed: float  # monotonic send time of its newest answered heartbeat

    def answered(self, sent: float, state: hb.LeaseState, generation: int) -> None: ...

    def unanswered(self) -> None: ...


@dataclass(eq=False)
class Beat:
    agent: str  # its address in the fleet
    addr: tuple[str, int]
    family: int
    key: Key
    period: float
    members: dict[str, Member] = field(default_factory=dict)
    packed: bytes = b""  # the members' lease ids as a request carries them
    on_answer: Callable[[hb.Answer], None] | None = None
    round_start: float | None = None  # loop time of the round's first send, until answered
    sends: dict[int, float] = field(default_factory=dict)  # this round's counters: send times


class Keeper:
    def __init__(self, port: DatagramPort) -> None:
        self.port = port
        self._beats: dict[tuple[tuple[str, int], bytes, float], list[Beat]] = {}
        self._of: dict[str, Beat] = {}  # lease id -> its beat
        self._wheel: Wheel[Beat] = Wheel(TICK)  # each beat's next send
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0  # datagram rounds answered (for the benchmark)
        self.lag = 0.0  # seconds the last batch of sends was late
        # Per agent: when it last answered (loop time) and its fault generation
        # then, so the fleet view knows it is up without asking (fleet_view.py).
        self.seen: dict[str, tuple[float, int]] = {}

    async def join(self, dest: tuple[str, int], key: Key, member: Member, period: float) -> None:
        """Renew member's lease at dest under key every period (on the loop)."""
        family, addr = await self.port.resolve(*dest)
        group = self._beats.setdefault((addr, key.key_id, period), [])
        beat = next((b for b in group if len(b.members) < hb.MAX_LEASES), None)
        if beat is None:
            beat = Beat(member.address, addr, family, key, period)
            beat.on_answer = functools.partial(self._answered, beat)
            group.append(beat)
            # At once: the hold already waited a random part of the period
            # before joining, which spreads a fleet's beats (lease_hold.py).
            self._schedule(beat, asyncio.get_running_loop().time())
        beat.members[member.lease_id] = member
        beat.packed = hb.pack_leases(list(beat.members))
        self._of[member.lease_id] = beat
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="lease-keeper")

    def leave(self, member: Member) -> None:
        beat = self._of.pop(member.lease_id, None)
        if beat is None:
            return
        beat.members.pop(member.lease_id, None)
        if not beat.members:
            self._drop(beat)
        else:
            beat.packed = hb.pack_leases(list(beat.members))

    def sent(self, member: Member) -> float:
        """Monotonic send time of the member's newest datagram not yet
        answered (0 if none: its answered rounds are its `confirmed`)."""
        beat = self._of.get(member.lease_id)
        return max(beat.sends.values(), default=0.0) if beat is not None else 0.0

    def _drop(self, beat: Beat) -> None:
        group = self._beats.get((beat.addr, beat.key.key_id, beat.period), [])
        if beat in group:
            group.remove(beat)
        if not group:
            self._beats.pop((beat.addr, beat.key.key_id, beat.period), None)
        for lease_id in beat.members:
            self._of.pop(lease_id, None)
        beat.members = {}
        self._forget(beat)
        self._wheel.remove(beat)

    def _forget(self, beat: Beat) -> None:
        for counter in beat.sends:
            self.port.unexpect(beat.key.key_id, counter)
        beat.sends.clear()

    def _schedule(self, beat: Beat, due: float) -> None:
        self._wheel.put(beat, due)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._of:
            now = loop.time()
            first = self._wheel.first()
            if first is not None and first <= now:
                self.lag = now - first  # how late this loop runs
            for beat in self._wheel.pop_due(now):
                if beat.members:
                    self._send(beat, now)
            first = self._wheel.first()
            wait = first - loop.time() if first is not None else IDLE
            # Sends a little late (TICK) in batches rather than a wakeup per
            # beat; a beat that joins meanwhile is seen within IDLE.
            await asyncio.sleep(min(max(wait, TICK), IDLE))

    async def stop(self) -> None:
        await cancel(self._task)

    async def probe(self, dest: tuple[str, int], key: Key, lease_id: str, wait: float) -> bool:
        """One datagram renewing one lease (kept over gRPC meanwhile): True if the
        agent answered within `wait` that the lease is live, so the path works again."""
        family, addr = await self.port.resolve(*dest)
        answered: asyncio.Future[hb.Answer] = asyncio.get_running_loop().create_future()

        def got(answer: hb.Answer) -> None:
            if not answered.done():
                answered.set_result(answer)

        counter = self._request(family, addr, key, hb.pack_leases([lease_id]), got)
        try:
            done, _ = await asyncio.wait([answered], timeout=wait)
        finally:
            self.port.unexpect(key.key_id, counter)
            answered.cancel()
        if not done:
            return False
        return any(s.lease_id == lease_id and s.live for s in answered.result().leases)

    def _send(self, beat: Beat, now: float) -> None:
        # The leases' time at the agent runs out at least a TTL (three periods)
        # after the newest answered send; the last third is the fallback's.
        renewed = min(m.confirmed for m in beat.members.values())
        cutoff = renewed + 2 * beat.period
        if beat.round_start is None:
            beat.round_start = now
        elif now >= cutoff:
            self.port.drain()  # an answer waiting behind a busy loop still counts
            if beat.round_start is None:
                return  # it did (and rescheduled the beat)
            expiry = renewed + 3 * beat.period
            if self.lag > beat.period / 4 and now < expiry:
                # This loop runs late (a fan-out's completions ahead of it), so
                # the datagrams went out late: a stream could not renew in the
                # third left either, and one per agent would only add load.
                # Datagrams go on while the lease may live; then the hold knows.
                self._resend(beat, now, expiry - now)
                return
            members = list(beat.members.values())
            self._drop(beat)
            for m in members:
                m.unanswered()
            return
        self._resend(beat, now, cutoff - now)

    def _resend(self, beat: Beat, now: float, left: float) -> None:
        """Send the round's datagram (again, with a new counter); look again
        after RESEND, or when `left` runs out."""
        assert beat.on_answer is not None  # set when the beat is made
        counter = self._request(beat.family, beat.addr, beat.key, beat.packed, beat.on_answer)
        beat.sends[counter] = now
        self._schedule(beat, now + min(RESEND, max(left, 0.0)))

    def _request(
        self, family: int, addr: tuple[str, int], key: Key, packed: bytes,
        on_answer: Callable[[hb.Answer], None],
    ) -> int:  # fmt: skip
        """Send a request renewing these (packed) leases under the key's next
        counter, and have its answer handed to on_answer; returns the counter."""
        counter = key.next()
        self.port.expect(key.key_id, counter, on_answer)
        self.port.send(family, addr, hb.encode_request(key.key_id, key.key, counter, packed))
        return counter

    def _answered(self, beat: Beat, answer: hb.Answer) -> None:
        if beat.round_start is None or not beat.members:
            return  # a late answer to a round already answered
        # The agent renewed when this counter's datagram came, after its send.
        sent = beat.sends.get(answer.counter, beat.round_start)
        beat.round_start = None
        self._forget(beat)
        self.rounds += 1
        self.seen[beat.agent] = (asyncio.get_running_loop().time(), answer.generation)
        for state in answer.leases:  # sent is monotonic: the loop's clock is
            m = beat.members.get(state.lease_id)
            if m is not None:
                m.answered(sent, state, answer.generation)
        if beat.members:
            self._schedule(beat, sent + beat.period)
