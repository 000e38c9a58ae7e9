"""Fault injection against a real `pi serve --provider two-party` process on loopback (no
dealer anywhere): bad bytes, a client that vanishes inside the setup, the offline or the online
phase, a wrong version or provider, a frozen server, tampered offline messages. Each fault ends
in a clear error within BOUND_S seconds; after every test the `tp` fixture checks that the
server still serves a correct inference and stayed within its memory budget."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from harness import BOUND_S, check_frozen_server, within

from pi import serving
from pi.secure_model import SecureModel
from pi.serving import connect
from pi.sessions import client_party
from protocols.transport.channel import connect as tls_connect
from protocols.transport.errors import RemoteError, TransportError
from protocols.transport.frame import MessageType
from raw_tls import raw_tls, read_all


def _raw(tp):
    server, _ = tp.endpoints()
    return tls_connect(server.host, server.port, server.tls, recv_timeout=BOUND_S)


def _hello(chan, **extra):
    chan.send(MessageType.HELLO, json.dumps({"version": serving.SESSION_VERSION, **extra}).encode())
    return json.loads(chan.recv(MessageType.SPEC))


def _errors_logged(tp, before: int) -> int:
    deadline = time.monotonic() + BOUND_S
    while tp.log("server").count(" WARNING ") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    return tp.log("server").count(" WARNING ") - before


def test_garbage_bytes_before_and_after_the_hello(tp):
    with raw_tls(tp.server_port, timeout=BOUND_S) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)))
        reply = read_all(s, timeout=BOUND_S)
    assert reply[:4] == b"\x89PIF" and b"magic" in reply
    with _raw(tp) as chan:                  # valid frames, then an array where the setup expects keys
        _hello(chan)
        chan.send_array(np.arange(5, dtype=np.float32))
        out, _ = within(BOUND_S, lambda: [chan.recv_frame() for _ in range(64)])
        assert isinstance(out, RemoteError), out
    assert "Traceback" not in tp.log("server")


def test_wrong_version_and_provider_are_named(tp):
    with _raw(tp) as chan:
        with pytest.raises(RemoteError, match="version 3 is not supported"):
            _hello(chan, version=3)
    server, _ = tp.endpoints()
    out, _ = within(BOUND_S, connect, server, None, 3.0, "dealer")
    assert isinstance(out, RemoteError) and "runs the two-party provider" in str(out) \
        and "--provider two-party" in str(out), out


@pytest.mark.parametrize("phase", ["setup", "offline", "online"])
def test_a_client_vanishing_mid_phase(tp, phase, monkeypatch):
    """The client hangs up right after its first message of the phase: the server logs it
    within the bound, discards that connection's material and serves the next client."""
    import pi.serving as srv
    warnings_before = tp.log("server").count(" WARNING ")
    real = srv.tls_connect
    state = {"phase": "setup"}

    def vanishing_connect(*a, **k):
        chan = real(*a, **k)
        send_array, send = chan.send_array, chan.send

        def cut(fn):
            def wrapped(*args, **kw):
                out = fn(*args, **kw)
                state["sends"] = state.get("sends", 0) + 1      # the HELLO is the first
                if state["phase"] == phase and (fn is send_array or phase == "setup" and state["sends"] > 1):
                    chan._close_transport()
                    raise ConnectionAbortedError(f"vanished in the {phase} phase")
                return out
            return wrapped
        chan.send_array, chan.send = cut(send_array), cut(send)
        return chan

    monkeypatch.setattr(srv, "tls_connect", vanishing_connect)
    server, _ = tp.endpoints()

    def scenario():
        if phase == "setup":
            state["phase"] = "setup"
            connect(server, None, 3.0)
            return
        state["phase"] = "none"
        client = connect(server, None, 3.0)
        if phase == "online":
            client.preprocess(1)
        state["phase"] = phase
        client.run(torch.zeros(1, 1, 4, 4))

    out, _ = within(BOUND_S, scenario)
    assert isinstance(out, ConnectionAbortedError) and phase in str(out), out
    monkeypatch.undo()
    assert _errors_logged(tp, warnings_before) >= 1, tp.log("server")[-2000:]


def test_tampered_offline_messages_are_refused(tp):
    """A client that completes the setup, then sends an offline message of the wrong size."""
    with _raw(tp) as chan:
        spec = _hello(chan)
        plan = SecureModel.from_public_spec(spec["spec"]).plan
        party = client_party("two-party", plan, None, spec["session"])
        party.setup(chan)
        chan.send(MessageType.DATA, json.dumps({"op": "offline", "batch": 1}).encode())
        chan.recv(MessageType.ACK)
        real = chan.send_array
        chan.send_array = lambda arr, *a, **k: real(np.asarray(arr).reshape(-1)[:1], *a, **k)   # truncated
        out, _ = within(BOUND_S, party.offline, chan, 1)
        assert isinstance(out, (RemoteError, TransportError, ValueError)), out
    assert "Traceback" not in tp.log("server")


def test_a_frozen_server_gives_the_client_a_clear_error(tp):
    check_frozen_server(tp)


def test_a_batch_beyond_the_limit_is_refused(tp):
    server, _ = tp.endpoints()
    with connect(server, None, 3.0) as client:
        client.max_batch = None
        out, _ = within(BOUND_S, client.run, torch.zeros(17, 1, 4, 4))
    assert isinstance(out, RemoteError) and "limits.max_batch" in str(out), out
