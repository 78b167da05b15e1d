"""The start-up slots and each connection's watch, without I/O."""

from __future__ import annotations

import asyncio

import pytest

from meterd.channels.ssh.startup import SessionWatch, StartupSlots, source_key


class Peer:
    """A connection as the slots see it: its watch, and whether it was told to close."""

    def __init__(self, slots: StartupSlots, address: str) -> None:
        self.crowded = 0
        self.expired = 0
        self.watch = SessionWatch(slots, 30.0, self._expire, self._crowd)
        self.admitted = self.watch.admit(address)

    def _expire(self) -> None:
        self.expired += 1

    def _crowd(self) -> None:
        self.crowded += 1
        self.watch.lost()  # the connection closes


def test_one_source_past_its_share_is_refused() -> None:
    slots = StartupSlots(total=30, per_source=3)
    peers = [Peer(slots, "192.0.2.7") for _ in range(5)]
    assert [p.admitted for p in peers] == [True, True, True, False, False]
    assert slots.open == 3


def test_a_full_listener_closes_the_busiest_sources_oldest_start_up() -> None:
    slots = StartupSlots(total=4, per_source=3)
    a = [Peer(slots, "192.0.2.1") for _ in range(3)]
    b = Peer(slots, "192.0.2.2")
    newcomer = Peer(slots, "192.0.2.3")
    assert newcomer.admitted
    assert [p.crowded for p in a] == [1, 0, 0]  # 192.0.2.1 held the most; its oldest made room
    assert b.crowded == 0
    assert slots.open == 4


def test_among_equally_busy_sources_the_oldest_start_up_makes_room() -> None:
    slots = StartupSlots(total=2, per_source=3)
    first, second = Peer(slots, "192.0.2.1"), Peer(slots, "192.0.2.2")
    Peer(slots, "192.0.2.3")
    assert (first.crowded, second.crowded) == (1, 0)


def test_a_flood_from_a_few_sources_never_pushes_out_a_client_from_another() -> None:
    slots = StartupSlots(total=30, per_source=10)
    client = Peer(slots, "198.51.100.9")
    flood = [Peer(slots, f"192.0.2.{n % 3 + 1}") for n in range(3000)]
    assert client.admitted
    assert client.crowded == 0
    assert slots.open <= 30
    assert sum(p.crowded == 0 and p.admitted for p in flood) == 29


def test_a_connection_whose_sessions_ended_holds_a_start_up_again() -> None:
    # Fifty connections from one source, each opening a session and closing it: they do
    # not leave the start-up for good, so no more than the source's share are let in.
    slots = StartupSlots(total=30, per_source=2)
    peers = [Peer(slots, "192.0.2.1") for _ in range(50)]
    for peer in peers:
        if peer.admitted:
            peer.watch.session_opened()
            peer.watch.session_closed()
    assert sum(p.admitted and p.crowded == 0 for p in peers) == 2
    assert slots.open == 2
    # A connection whose last session closes while its source's share is taken must close.
    one_each = StartupSlots(total=30, per_source=1)
    late = Peer(one_each, "192.0.2.1")
    late.watch.session_opened()
    assert Peer(one_each, "192.0.2.1").admitted
    late.watch.session_closed()
    assert late.crowded == 1


def test_a_closed_connection_gives_its_slot_back_once() -> None:
    slots = StartupSlots(total=2, per_source=2)
    peer = Peer(slots, "192.0.2.1")
    peer.watch.lost()
    peer.watch.lost()
    peer.watch.session_closed()  # a session's close reported after the connection is gone
    assert slots.open == 0
    assert [Peer(slots, "192.0.2.1").admitted for _ in range(3)] == [True, True, False]


def test_no_session_timer_runs_only_while_authenticated_without_a_session() -> None:
    async def scenario() -> Peer:
        slots = StartupSlots(total=2, per_source=2)
        peer = Peer(slots, "192.0.2.1")
        peer.watch = SessionWatch(slots, 0.01, peer._expire, peer._crowd)
        assert peer.watch.admit("192.0.2.1")
        peer.watch.authenticated()
        peer.watch.session_opened()
        await asyncio.sleep(0.05)
        assert peer.expired == 0
        peer.watch.session_closed()
        await asyncio.sleep(0.05)
        return peer

    assert asyncio.run(scenario()).expired == 1


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_sources_are_ipv4_addresses_and_ipv6_64s(address: str, key: str) -> None:
    assert source_key(address) == key
