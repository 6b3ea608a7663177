"""The node's phone system and dialer, from the settings (``DIALHUB_TELEPHONY``).

``simulator`` (the default) is ``dialer.simulator.SimulatedTelephony`` on the real clock: calls
ring, are answered, busy or not answered and talk for the configured times, so ``dialhub
serve`` and the demo dial without a phone line. Any other value names a provider of the
telephony port (``dialer.telephony.Telephony``) as ``package.module:factory``; the factory is
called as ``factory(settings, clock)``. One ``Dialer`` per node dials for the agents connected
to that node (docs/architecture.md, "Dialing on several nodes").
"""

from __future__ import annotations

import importlib
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

from dialer.clock import Clock, RealClock
from dialer.dial_modes import Dialer
from dialer.lines import DatabaseCustomers
from dialer.next_customer import NextCustomer
from dialer.pacing import PacingSettings
from dialer.simulator import CallProfile, LogNormal, SimulatedTelephony
from dialer.telephony import CallEventKind, Telephony
from realtime.settings import Settings


def make_telephony(settings: Settings, clock: Clock) -> Telephony:
    """The provider the settings name."""
    if settings.telephony == "simulator":
        ring = settings.sim_ring_seconds
        talk = settings.sim_talk_seconds
        profile = CallProfile(
            answer_rate=settings.sim_answer_rate,
            busy_rate=min(settings.sim_busy_rate, 1 - settings.sim_answer_rate),
            failed_rate=0.0,
            ringing_after=min(1.0, ring / 2),
            ring_seconds=LogNormal(ring, ring / 2, min(ring, 0.1), max(ring * 3, 1.0)),
            busy_seconds=LogNormal(min(4.0, ring), 0, 0.05),
            failed_seconds=min(1.5, ring),
            no_answer_timeout=settings.sim_no_answer_seconds,
            talk_seconds=LogNormal(talk, talk / 2, min(talk, 1.0), max(talk * 6, 10.0)),
        )
        fates = {suffix: CallEventKind(kind) for suffix, kind in settings.sim_fates.items()}
        return SimulatedTelephony(clock, profile, seed=settings.sim_seed, fates=fates)
    module_name, _, factory_name = settings.telephony.partition(":")
    if not factory_name:
        raise ValueError("DIALHUB_TELEPHONY is 'simulator' or 'package.module:factory'")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return cast(Telephony, factory(settings, clock))


def open_dialer(settings: Settings, engine: AsyncEngine, next_customer: NextCustomer) -> Dialer:
    """This node's dialer on the real clock, over the database and Redis."""
    clock = RealClock()
    customers = DatabaseCustomers(engine, next_customer)
    return Dialer(
        customers,
        make_telephony(settings, clock),
        clock,
        caller_id=settings.caller_id,
        pacing=PacingSettings(prior_answer_rate=settings.pacing_prior_answer_rate),
    )
