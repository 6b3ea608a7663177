"""The key layout puts every key of one data owner in one cluster slot."""

from __future__ import annotations

from redis.crc import key_slot

from presence.keys import (
    HopperKey,
    customer_key,
    fence_key,
    live_key,
    ready_key,
    user_key,
)


def test_every_key_of_an_owner_shares_one_slot() -> None:
    hopper = HopperKey.of(3, [9, 4])
    keys = [
        customer_key(7, 1),
        customer_key(7, 99999),
        user_key(7, 5),
        live_key(7),
        fence_key(7),
        ready_key(7),
        hopper.key(7),
        hopper.segments_key(7),
    ]
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"{o:7}")}
    assert customer_key(7, 1) == "dh:{o:7}:cust:1"
    assert hopper.key(7) == "dh:{o:7}:hop:3:4,9"


def test_hopper_key_names_the_segment_set_not_its_order() -> None:
    assert HopperKey.of(3, [4, 9]) == HopperKey.of(3, (9, 4))
    assert HopperKey.of(3).segment_set == "all"
    assert HopperKey.of(3, []).segment_set == "all"
