"""Both two-party sessions in one process, over an in-process channel pair (tests, SecureModel.run)."""
from __future__ import annotations

import threading

import numpy as np

from protocols.transport.channel import InProcessChannel
from protocols.transport.errors import TransportError
from protocols.two_party.session import ClientSession, ServerSession


def run(plan, weights, x: np.ndarray, chans=None, timeout: float = 600.0):
    """One inference of `plan` on `x`: setup, offline, online. Returns (output, server session,
    client session, client bundle). `chans`: a (server, client) channel pair (default: a fresh
    in-process pair); the server runs on a thread, and its error, if any, is raised here."""
    chan_s, chan_c = chans if chans is not None else InProcessChannel.pair()
    x = np.asarray(x, dtype=np.float64)
    server, client = ServerSession(plan, weights), ClientSession(plan)
    errors: list[BaseException] = []

    def serve():
        try:
            server.setup(chan_s)
            sb = server.offline(chan_s, x.shape[0])
            server.online(chan_s, sb)
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the caller's thread
            errors.append(exc)
            chan_s.close()

    th = threading.Thread(target=serve, name="pi-two-party-server", daemon=True)
    th.start()
    try:
        client.setup(chan_c)
        cb = client.offline(chan_c, x.shape[0])
        y = client.online(chan_c, cb, x)
    except BaseException as exc:
        chan_c.close()
        th.join(5)
        # The party that failed first is the one to report: the other one only saw the channel close.
        if errors and isinstance(exc, TransportError) and not isinstance(errors[0], TransportError):
            raise errors[0] from None
        raise
    th.join(timeout)
    if errors:
        raise errors[0]
    return y, server, client, cb
