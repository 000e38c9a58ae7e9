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
