"""One inference of a plan between a server thread and a client, every array each party
receives in the online phase recorded: what the privacy and ring-width tests inspect."""
from __future__ import annotations

import threading

import numpy as np

from protocols import engine
from protocols.providers import PROVIDERS
from protocols.transport.channel import InProcessChannel


class Recording:
    """Wraps a channel and keeps a copy of every array received once `online` is set."""

    def __init__(self, chan):
        self.chan, self.meter, self.seen, self.online = chan, None, [], False

    def recv_array(self, *a, **k):
        arr = self.chan.recv_array(*a, **k)
        if self.online:
            self.seen.append(np.array(arr, copy=True))
        return arr

    def __getattr__(self, name):
        return getattr(self.chan, name)


def run_recorded(plan, weights, x, provider: str = "dealer"):
    """(client output, ServerRun, ClientRun, server's Recording, client's Recording)."""
    client_mat, server_mat = PROVIDERS[provider]().preprocess(plan, x.shape[0])
    a, b = InProcessChannel.pair()
    rs, rc = Recording(a), Recording(b)
    srun = engine.ServerRun(plan, weights, server_mat, x.shape[0])
    crun = engine.ClientRun(plan, client_mat, x.shape[0])

    def server():
        srun.offline(rs)
        rs.online = True
        srun.online(rs)
    t = threading.Thread(target=server)
    t.start()
    crun.offline(rc)
    rc.online = True
    y = crun.online(rc, x)
    t.join()
    return y, srun, crun, rs, rc


def run_recorded_two_party(plan, weights, x):
    """run_recorded for the two-party provider: (client output, server session, client session,
    server's Recording, client's Recording); the recordings start at the online phase."""
    (y,), server, client, rs, rc = _two_party_runs(plan, weights, x, runs=1)
    return y, server, client, rs, rc


def consume_twice(plan, weights, x):
    """Makes one pair of two-party bundles, uses them once, and checks that a second use of
    either is refused (ProtocolError) before anything is sent."""
    import pytest

    from protocols.transport.errors import ProtocolError
    from protocols.two_party import ClientSession, ServerSession
    a, b = InProcessChannel.pair()
    server, client = ServerSession(plan, weights), ClientSession(plan)
    out = {}

    def serve():
        server.setup(a)
        out["sb"] = sb = server.offline(a, x.shape[0])
        server.online(a, sb)
    t = threading.Thread(target=serve)
    t.start()
    client.setup(b)
    cb = client.offline(b, x.shape[0])
    client.online(b, cb, x)
    t.join()
    with pytest.raises(ProtocolError, match="already consumed"):
        client.online(b, cb, x)
    with pytest.raises(ProtocolError, match="already consumed"):
        server.online(a, out["sb"])


def record_bundles(plan, weights, x, runs: int):
    """One two-party session, `runs` bundles made and used one after the other on input x;
    per run, (arrays the server received online, arrays the client received online)."""
    _, _, _, rs, rc = _two_party_runs(plan, weights, x, runs)
    per_run = len(rs.seen) // runs
    return [(rs.seen[i * per_run:(i + 1) * per_run], rc.per_run[i]) for i in range(runs)]


def _two_party_runs(plan, weights, x, runs: int):
    """One two-party session, `runs` bundles made and used one after the other on input x:
    (client outputs, server session, client session, server's Recording, client's Recording),
    the recordings holding only online arrays, the client's also per run in `per_run`."""
    from protocols.two_party import ClientSession, ServerSession
    a, b = InProcessChannel.pair()
    rs, rc = Recording(a), Recording(b)
    server, client = ServerSession(plan, weights), ClientSession(plan)
    errors = []

    def serve():
        try:
            server.setup(rs)
            for _ in range(runs):
                rs.online = False
                sb = server.offline(rs, x.shape[0])
                rs.online = True
                server.online(rs, sb)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            errors.append(exc)
            a.close()
    t = threading.Thread(target=serve)
    t.start()
    ys, rc.per_run = [], []
    client.setup(rc)
    for _ in range(runs):
        rc.online = False
        cb = client.offline(rc, x.shape[0])
        rc.online, seen_before = True, len(rc.seen)
        ys.append(client.online(rc, cb, x))
        rc.per_run.append(rc.seen[seen_before:])
    t.join()
    if errors:
        raise errors[0]
    return ys, server, client, rs, rc
