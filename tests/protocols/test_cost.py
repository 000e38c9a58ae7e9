"""Cost meter: scopes, byte and round counting, time attribution, reports and merging."""
from __future__ import annotations

import concurrent.futures
import threading

import numpy as np
import pytest

from protocols.cost import (
    KNOWN_OPS,
    CostMeter,
    CostReport,
    CostRow,
    ScopeKey,
    format_bytes,
    format_seconds,
)
from protocols.transport import InProcessChannel, MessageType

T = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def rows(report):
    return {(r.layer, r.op, r.phase): r for r in report.per_layer}


def test_scopes_nest_and_inner_keys_override():
    m = CostMeter("client")
    assert m.current_key() == ScopeKey("-", "io", "online")
    with m.scope(layer="conv1", phase="offline"):
        assert m.current_key() == ScopeKey("conv1", "io", "offline")
        with m.scope(op="linear"):
            assert m.current_key() == ScopeKey("conv1", "linear", "offline")
            with m.scope(layer="relu1", op="relu", phase="online"):
                assert m.current_key() == ScopeKey("relu1", "relu", "online")
            assert m.current_key() == ScopeKey("conv1", "linear", "offline")
    assert m.current_key() == ScopeKey("-", "io", "online")


def test_scope_validation_names_the_bad_value():
    m = CostMeter("client")
    with pytest.raises(ValueError, match=r"unknown op class 'softplus'; known: .*relu"):
        with m.scope(op="softplus"):
            pass
    with pytest.raises(ValueError, match=r"unknown phase 'warmup'; use one of offline, online"):
        with m.scope(phase="warmup"):
            pass
    with pytest.raises(ValueError, match="layer must be a non-empty string"), m.scope(layer=""):
        pass
    m2 = CostMeter("client", extra_ops=["softplus"])
    with m2.scope(op="softplus"):
        pass
    assert {"linear", "relu", "circa", "poly", "trunc", "pool", "io", "other"} <= KNOWN_OPS
    with pytest.raises(ValueError, match="party must be a non-empty name"):
        CostMeter("")


def test_round_rule_on_a_single_meter():
    m = CostMeter("a")
    m.record_sent(10)           # first flight
    m.record_sent(10)           # same flight
    assert m.rounds == 1
    m.record_received(5)
    m.record_received(5)
    m.record_sent(10)           # sends after receiving: new flight
    assert m.rounds == 2
    m.record_received(5)
    m.record_sent(3, control=True)  # ERROR/BYE: never a round
    assert m.rounds == 2
    m.record_sent(10)
    assert m.rounds == 3
    with m.scope(phase="offline"):  # a phase change opens a round even without a receive
        m.record_sent(10)
    assert m.report().offline_rounds == 1 and m.report().rounds == 3
    r = m.report()
    assert r.online_bytes == 43 and r.offline_bytes == 10 and r.online_bytes_received == 15


def test_receive_only_party_has_no_rounds():
    m = CostMeter("dealer-client")
    m.record_received(100)
    assert m.rounds == 0 and m.bytes_received == 100


def run_pair(fa, fb):
    a, b = InProcessChannel.pair(CostMeter("client"), CostMeter("server"), timeout=T)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(fb, b)
        fa(a)
        fut.result(T)
    return a.meter.report(), b.meter.report()


def test_exchange_is_one_round_for_each_party():
    def party(ch):
        x = np.zeros(100, np.uint64)
        for _ in range(5):
            with ch.meter.scope(layer="relu1", op="relu"):
                x = ch.exchange_array(x)

    ra, rb = run_pair(party, party)
    assert ra.rounds == rb.rounds == 5
    assert ra.merge(rb).rounds == 5
    frame = 16 + 4 + 8 + 800
    assert ra.online_bytes == rb.online_bytes == 5 * frame
    assert ra.merge(rb).online_bytes == 10 * frame


def test_ping_pong_counts_round_trips():
    def client(ch):
        for i in range(4):
            ch.send(MessageType.DATA, b"q")
            ch.recv(MessageType.DATA)

    def server(ch):
        for i in range(4):
            ch.recv(MessageType.DATA)
            ch.send(MessageType.DATA, b"a")

    ra, rb = run_pair(client, server)
    assert ra.rounds == 4 and rb.rounds == 4 and ra.merge(rb).rounds == 4
    assert ra.online_bytes == 4 * 17 == rb.online_bytes_received


def test_bytes_land_in_the_current_scope_and_phase():
    def client(ch):
        with ch.meter.scope(layer="conv1", op="linear", phase="offline"):
            ch.recv_array(np.uint64, (10,), expect=MessageType.PREPROCESSING)
        with ch.meter.scope(layer="conv1", op="linear", phase="online"):
            ch.send_array(np.zeros(4, np.uint64))
        with ch.meter.scope(layer="out", op="io"):
            ch.recv(MessageType.RESULT)

    def server(ch):
        with ch.meter.scope(layer="conv1", op="linear", phase="offline"):
            ch.send_array(np.zeros(10, np.uint64), MessageType.PREPROCESSING)
        with ch.meter.scope(layer="conv1", op="linear", phase="online"):
            ch.recv_array(np.uint64, (4,))
        with ch.meter.scope(layer="out", op="io"):
            ch.send(MessageType.RESULT, b"label=3")

    rc, rs = run_pair(client, server)
    c, s = rows(rc), rows(rs)
    assert c["conv1", "linear", "offline"].bytes_received == 16 + 12 + 80 == s["conv1", "linear", "offline"].bytes_sent
    assert c["conv1", "linear", "online"].bytes_sent == 16 + 12 + 32
    assert s["out", "io", "online"].bytes_sent == 16 + 7 and s["out", "io", "online"].rounds == 1
    assert rc.offline_bytes == 0 and rs.offline_bytes == 108
    merged = rc.merge(rs)
    assert merged.parties == ("client", "server")
    assert merged.offline_bytes == 108 and merged.online_bytes == 60 + 23
    assert merged.online_bytes == merged.online_bytes_received  # every byte counted once each way
    assert merged.rounds == 1  # client: 1 flight; server: recv then send: 1 flight


def test_time_is_exclusive_and_charged_to_the_innermost_scope():
    clock = FakeClock()
    m = CostMeter("server", clock=clock)
    with m.scope(layer="block1", phase="online"):
        clock.advance(1.0)
        with m.scope(layer="relu1", op="relu"):
            clock.advance(2.0)
        clock.advance(0.5)
        with m.scope(layer="pre", phase="offline"):
            clock.advance(4.0)
    clock.advance(100.0)  # outside every scope: not charged to a row
    r = m.report()
    got = {k: v.seconds for k, v in rows(r).items()}
    assert got == {("block1", "io", "online"): 1.5, ("relu1", "relu", "online"): 2.0,
                   ("pre", "io", "offline"): 4.0}
    assert r.online_seconds == 3.5 and r.offline_seconds == 4.0 and r.wall_seconds == 107.5
    # a report taken inside an open scope includes its time so far
    with m.scope(layer="late"):
        clock.advance(0.25)
        assert rows(m.report())["late", "io", "online"].seconds == 0.25


def test_scopes_are_per_thread():
    m = CostMeter("server")
    inside = threading.Event()
    release = threading.Event()

    def other():
        with m.scope(layer="other-thread", op="pool"):
            inside.set()
            release.wait(T)
            m.record_sent(7)

    th = threading.Thread(target=other)
    th.start()
    assert inside.wait(T)
    assert m.current_key() == ScopeKey("-", "io", "online")
    m.record_sent(3)
    release.set()
    th.join(T)
    r = rows(m.report())
    assert r["other-thread", "pool", "online"].bytes_sent == 7 and r["-", "io", "online"].bytes_sent == 3


def test_merge_rules_and_refusals():
    c = CostReport.from_rows(("client",), [CostRow("l1", "relu", "online", 100, 80, 1, 1, 3, 0.5),
                                           CostRow("l2", "linear", "offline", 10, 0, 1, 0, 1, 2.0)])
    s = CostReport.from_rows(("server",), [CostRow("l1", "relu", "online", 80, 100, 1, 1, 4, 0.25),
                                           CostRow("l3", "pool", "online", 5, 0, 1, 0, 1, 0.1)])
    m = c.merge(s)
    r = rows(m)
    assert r["l1", "relu", "online"] == CostRow("l1", "relu", "online", 180, 180, 2, 2, 4, 0.5)
    assert ("l3", "pool", "online") in r and ("l2", "linear", "offline") in r
    assert m.rounds == max(c.rounds, s.rounds) == 5
    assert m.online_seconds == max(0.5, 0.35)
    assert m.online_bytes == 185 and m.offline_bytes == 10 and m.total_bytes == 195
    with pytest.raises(ValueError, match=r"both reports cover party \['client'\]"):
        c.merge(c)
    with pytest.raises(TypeError, match="merge needs a CostReport"):
        c.merge({})


def test_report_dict_round_trip_table_and_aggregates():
    def party(ch):
        with ch.meter.scope(layer="conv1", op="linear", phase="offline"):
            ch.exchange_array(np.zeros(1000, np.uint64))
        with ch.meter.scope(layer="conv1", op="trunc"):
            ch.exchange_array(np.zeros(100, np.uint64))
        with ch.meter.scope(layer="relu1", op="circa"):
            ch.exchange_array(np.zeros(100_000, np.uint8))

    rc, rs = run_pair(party, party)
    m = rc.merge(rs)
    assert CostReport.from_dict(m.to_dict()) == m
    with pytest.raises(ValueError, match="cost report version 99 is not supported"):
        CostReport.from_dict({**m.to_dict(), "version": 99})
    text = m.table()
    for word in ("client+server", "conv1", "relu1", "circa", "KB", "online :", "offline:", "rounds"):
        assert word in text, word
    by_layer = {(r.layer, r.phase): r for r in rc.by_layer()}
    assert by_layer["conv1", "online"].bytes_sent == 16 + 12 + 800
    assert by_layer["relu1", "online"].rounds == 1
    by_op = {(r.op, r.phase): r for r in rc.by_op(phase="online")}
    assert set(by_op) == {("trunc", "online"), ("circa", "online")}


def test_reset_and_formatting():
    m = CostMeter("client")
    m.record_sent(10)
    m.record_received(10)
    m.reset()
    assert m.bytes_sent == m.bytes_received == m.rounds == 0 and m.report().per_layer == ()
    m.record_sent(1)
    assert m.rounds == 1  # the round state starts afresh too
    assert format_bytes(999) == "999 B" and format_bytes(1500) == "1.50 KB"
    assert format_bytes(12_300_000) == "12.30 MB" and format_bytes(3e9) == "3.00 GB"
    assert format_seconds(0.0123) == "12.30 ms" and format_seconds(2.5) == "2.500 s"
    assert format_seconds(5e-6) == "5 us"
