"""The simulated phone system on the virtual clock: seeded, so every run is the same run."""

from __future__ import annotations

from dialer.clock import VirtualClock
from dialer.simulator import CallProfile, LogNormal, SimulatedTelephony
from dialer.telephony import CallEvent, CallEventKind


async def place_calls(seed: int, n: int = 200) -> list[tuple[str, str, float]]:
    clock = VirtualClock(start=0)
    telephony = SimulatedTelephony(clock, CallProfile(answer_rate=0.3), seed=seed)
    events: list[CallEvent] = []

    async def handler(event: CallEvent) -> None:
        events.append(event)

    telephony.connect(handler)
    for i in range(n):
        await telephony.originate(f"c{i}", f"+4790{i:06d}", "+4722000000")
    await clock.run_until(4 * 3600)
    return [(e.call_id, e.kind.value, e.at) for e in events]


async def test_same_seed_same_calls() -> None:
    print("seeds 7, 8")
    first, again, other = await place_calls(7), await place_calls(7), await place_calls(8)
    assert first == again
    assert first != other


async def test_every_call_ends_once_with_the_configured_shares() -> None:
    events = await place_calls(11, n=2000)
    final = {}
    for call_id, kind, _at in events:
        if kind in ("busy", "no_answer", "failed", "hung_up"):
            assert call_id not in final, "a call ended twice"
            final[call_id] = kind
    assert len(final) == 2000
    answered = {c for c, kind, _ in events if kind == "answered"}
    assert 0.26 < len(answered) / 2000 < 0.34  # 30 % configured, seed 11
    assert all(final[c] == "hung_up" for c in answered)


async def test_hang_up_ends_an_answered_call_before_the_customer_does() -> None:
    clock = VirtualClock(start=0)
    profile = CallProfile(answer_rate=1.0, busy_rate=0, failed_rate=0, ring_seconds=LogNormal(5, 0))
    telephony = SimulatedTelephony(clock, profile, seed=1)
    events: list[CallEvent] = []

    async def handler(event: CallEvent) -> None:
        events.append(event)

    telephony.connect(handler)
    await telephony.originate("a", "+4790000001", "")
    await clock.run_until(6)
    await telephony.hang_up("a")
    await clock.run_until(3600)
    assert [e.kind for e in events] == [
        CallEventKind.RINGING,
        CallEventKind.ANSWERED,
        CallEventKind.HUNG_UP,
    ]
    assert events[-1].at == 6
    assert telephony.active() == 0
