"""Fault injection against real `pi dealer` / `pi serve` processes on loopback.

One test (or a few) per fault of the deployment review, numbered as its rows: each fault must
end in a clear error within BOUND_S seconds, and after every test the `dep` fixture checks
that the deployment still serves a correct inference and that neither process grew past its
memory budget.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from harness import BOUND_S, MB, check_frozen_server, free_port, rss, within

from pi import serving, sessions
from pi.secure_model import SecureModel
from pi.serving import connect
from protocols import engine
from protocols.dealer_service import fetch_material
from protocols.material import MaterialMismatch, confirm_bundle
from protocols.transport.certs import TlsConfig
from protocols.transport.channel import connect as tls_connect
from protocols.transport.errors import HandshakeError, RemoteError
from protocols.transport.frame import HEADER, MAGIC, MessageType


def _sessions_served(dep, role: str) -> list[str]:
    return [line.split("session ")[1].split(":")[0] for line in dep.log("dealer").splitlines()
            if f": sent {role} material" in line]


# ---------------------------------------------------------------- 1: dealer restarted mid-inference

def test_row1_dealer_restart_between_the_two_fetches_is_an_error_not_an_answer(dep, monkeypatch):
    original = sessions.fetch_material
    restarted = {}

    def restart_then_fetch(host, port, tls, role, session, *rest, **kw):
        if role == "client" and not restarted:
            deadline = time.monotonic() + BOUND_S
            while session not in _sessions_served(dep, "server"):     # the old dealer served the server
                assert time.monotonic() < deadline, "the server never fetched its material"
                time.sleep(0.05)
            dep.kill("dealer")
            dep.start("dealer")                                       # same port, no memory of the session
            dep.baseline["dealer"] = rss(dep.pid("dealer"))
            restarted["at"] = time.monotonic()
        return original(host, port, tls, role, session, *rest, **kw)

    monkeypatch.setattr(sessions, "fetch_material", restart_then_fetch)
    with connect(*dep.endpoints(), timeout=3.0) as client:
        with pytest.raises(MaterialMismatch, match="halves of different preprocessing bundles"):
            client.run(torch.randn(2, 1, 4, 4))
    assert time.monotonic() - restarted["at"] <= BOUND_S
    monkeypatch.undo()


# ---------------------------------------------------------------- 2: batch beyond the limits

def test_row2_a_batch_beyond_the_limits_is_refused_by_server_and_dealer_alike(dep):
    server, dealer = dep.endpoints()
    plan = dep.secure.plan
    for batch, limit in ((2000, "limits.max_batch"), (16, "limits.max_material_bytes")):
        out, _ = within(BOUND_S, fetch_material, dealer.host, dealer.port, dealer.tls, "client",
                        f"row2-direct-{batch}", plan, batch)
        assert isinstance(out, RemoteError) and limit in str(out), out
        with connect(server, dealer, timeout=3.0) as client:
            client.max_batch = None                  # a client that ignores the advertised limit
            out, _ = within(BOUND_S, client.run, torch.zeros(batch, 1, 4, 4))
        assert isinstance(out, RemoteError) and limit in str(out), out
    assert not any(s.startswith("row2-") for s in _sessions_served(dep, "client"))


# ---------------------------------------------------------------- 3: connections that never speak TLS

@pytest.mark.parametrize("count", [100])
def test_row3_idle_tcp_connections_delay_nobody(dep, count):
    socks = [socket.create_connection(("127.0.0.1", port)) for port in (dep.server_port, dep.dealer_port)
             for _ in range(count)]
    try:
        dep.healthy()                                 # served at once, not after the idle ones
    finally:
        for s in socks:
            s.close()


def test_row3_beyond_the_connection_cap_a_client_is_refused_clearly(dep):
    socks = [socket.create_connection(("127.0.0.1", dep.server_port)) for _ in range(130)]   # cap: 128
    try:
        time.sleep(0.3)
        out, _ = within(BOUND_S, connect, *dep.endpoints(), timeout=3.0)
        assert isinstance(out, RemoteError) and "at its connection limit (128 open connections)" in str(out), out
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + BOUND_S        # the slots free as the server sees the hang-ups
    while isinstance(out, RemoteError) and time.monotonic() < deadline:
        time.sleep(0.1)
        out, _ = within(BOUND_S, connect, *dep.endpoints(), timeout=3.0)
    assert not isinstance(out, Exception), out
    out.close()


# ---------------------------------------------------------------- 4: giant announced frames

def test_row4_a_giant_announced_frame_allocates_nothing(dep):
    header = HEADER.pack(MAGIC, 1, int(MessageType.HELLO), 0, (1 << 30) - 32)   # a 1 GiB - 16 B frame
    server, dealer = dep.endpoints()
    before = {role: rss(dep.pid(role)) for role in ("server", "dealer")}
    chans = [tls_connect(ep.host, ep.port, ep.tls, recv_timeout=BOUND_S) for ep in (server, dealer) for _ in range(4)]
    for chan in chans:
        chan._write([memoryview(header + b"x" * 1000)], BOUND_S)               # and then nothing
    time.sleep(0.5)
    for role in ("server", "dealer"):
        grown = rss(dep.pid(role)) - before[role]
        assert grown < 16 * MB, f"{role} grew by {grown / MB:.0f} MB for 4 announced 1 GiB frames"
    for chan in chans:
        out, _ = within(BOUND_S, chan.recv)
        assert isinstance(out, RemoteError) and "stalled" in str(out), out
        chan.close()


# ---------------------------------------------------------------- 5: who may fetch which half

def test_row5_the_dealer_gives_each_certificate_only_its_own_role(dep):
    _, dealer = dep.endpoints()
    plan = dep.secure.plan
    out, _ = within(BOUND_S, fetch_material, dealer.host, dealer.port, dealer.tls, "server", "row5-session-1", plan, 1)
    assert isinstance(out, RemoteError) and "enrolled as a client; it cannot fetch the server's material" in str(out)
    stranger = dep.certs["stranger"]
    for tls in (TlsConfig(peer_fingerprint=dep.certs["dealer"].fingerprint),                    # no certificate
                TlsConfig(stranger.cert, stranger.key, peer_fingerprint=dep.certs["dealer"].fingerprint)):
        out, _ = within(BOUND_S, fetch_material, dealer.host, dealer.port, tls, "server", "row5-session-1", plan, 1)
        assert isinstance(out, HandshakeError) and "certificate" in str(out), out
    assert "row5-session-1" not in _sessions_served(dep, "server")


# ---------------------------------------------------------------- 6: material nobody collects

def test_row6_unclaimed_material_is_bounded_by_the_budget_and_expires(dep):
    _, dealer = dep.endpoints()
    plan = dep.secure.plan
    served, busy = [], []
    for i in range(10):                  # clients that fetch their half and hang up: the server halves stay
        sid = f"row6-unclaimed-{i:03d}"
        out, _ = within(BOUND_S, fetch_material, dealer.host, dealer.port, dealer.tls, "client", sid, plan, 4)
        if isinstance(out, Exception):
            assert isinstance(out, RemoteError) and "limits.memory_budget_bytes" in str(out), out
            busy.append(sid)
        else:
            served.append(sid)
    assert served and busy, (served, busy)                       # the budget, not the OOM killer, said no
    deadline = time.monotonic() + BOUND_S                       # expiry: 3 s, on a timer
    while sum(f"session {s} expired" in dep.log("dealer") for s in served) < len(served):
        assert time.monotonic() < deadline, "unclaimed material did not expire"
        time.sleep(0.2)


# ---------------------------------------------------------------- 7: a frozen server

def test_row7_a_frozen_server_gives_the_client_a_clear_error(dep):
    check_frozen_server(dep)


# ---------------------------------------------------------------- 8: a broken bundle

@pytest.mark.parametrize("fault", ["missing", "shape"])
def test_row8_pi_serve_refuses_a_broken_bundle_at_start_up(dep, fault, tmp_path):
    with np.load(dep.bundle, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    name = next(k for k in arrays if k.startswith("w:"))
    if fault == "missing":
        del arrays[name]
    else:
        arrays[name] = arrays[name][:1]
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    c = dep.certs["server"]
    cmd = [sys.executable, "-m", "pi", "serve", "--model", str(bad), "--config", str(dep.config), "--cert", str(c.cert),
           "--key", str(c.key), "--server-port", str(free_port())]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert time.monotonic() - t0 <= BOUND_S + 10      # interpreter start-up (torch) included
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("pi: error: "), proc.stderr
    assert name[2:] in lines[0] and ("no weight" if fault == "missing" else "shape") in lines[0]


# ---------------------------------------------------------------- 9: bogus offline items

@pytest.mark.parametrize("tamper", ["shape", "name"])
def test_row9_the_server_refuses_bogus_offline_items(dep, tamper):
    server, dealer = dep.endpoints()
    with tls_connect(server.host, server.port, server.tls, recv_timeout=BOUND_S) as chan:
        chan.send(MessageType.HELLO, json.dumps({"version": serving.SESSION_VERSION}).encode())
        spec = json.loads(chan.recv(MessageType.SPEC))
        chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": 1}).encode())
        chan.recv(MessageType.ACK)
        plan = SecureModel.from_public_spec(spec["spec"]).plan
        material, _ = fetch_material(dealer.host, dealer.port, dealer.tls, "client", f"{spec['session']}-0", plan, 1)
        run = engine.ClientRun(plan, material, 1)
        confirm_bundle(chan, material)
        st = run.state
        st.inbox.update(run._recv_dict(chan))
        for layer in run.layers:
            layer.client_offline(st)
        key = next(iter(st.outbox))
        if tamper == "shape":
            st.outbox[key] = st.outbox[key][:1]            # would broadcast into a wrong answer
            expected = f"offline item {key!r} from the client: expected"
        else:
            st.outbox["nosuchlayer/u"] = st.outbox.pop(key)
            expected = "unexpected offline item 'nosuchlayer/u'"

        def send_and_wait():               # the refusal may come while we still send
            run._send_dict(chan, st.outbox)
            chan.recv()

        out, _ = within(BOUND_S, send_and_wait)
        assert isinstance(out, RemoteError) and expected in str(out), out
    assert "KeyError" not in dep.log("server") and "Traceback" not in dep.log("server")
