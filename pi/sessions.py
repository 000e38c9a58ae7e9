"""Each party's side of one connection, the same for every provider (pi.serving drives it):

    party.setup(chan)                    once per connection (two-party: HE keys, base OTs)
    bundle = party.offline(chan, batch)  one inference's one-time material, made before the input
    party.online(chan, bundle[, x])      consumes the bundle (a second use is refused)

Bundles may be made ahead of time (N offline phases, then N online phases, in the order made):
that is the preprocessing store of `RemoteModel.preprocess` and `pi infer --preprocess N`. They
live in the process's memory for the connection's lifetime and die with it: a bundle is
one-time material bound to this connection's keys, and neither side writes it to disk.

- `dealer`: offline = fetch this party's half from the dealer service for inference
  "<session>-<n>" (n counts the connection's offline phases, the same on both sides), check that
  both halves belong to one bundle (`confirm_bundle`), then the engine's offline phase.
- `two-party` (an interactive provider): the provider's own sessions (protocols.two_party).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from protocols import engine
from protocols.dealer_service import fetch_material
from protocols.material import confirm_bundle
from protocols.providers import get_provider
from protocols.transport.errors import ProtocolError, TransportError


@dataclass
class Bundle:
    """One inference's one-time material on one side, made by `offline`.

    material_bytes: what this party received from a dealer for it (0 without one).
    stored_bytes: what this party keeps between the offline and the online phase (dealer:
    its half of the material; two-party: the provider's count, e.g. garbled tables).
    offline_s: this party's wall time of the offline phase (a dealer fetch included)."""
    batch: int
    handle: object
    material_bytes: int
    stored_bytes: int
    offline_s: float
    used: bool = False

    def take(self) -> object:
        if self.used:
            raise ProtocolError("this preprocessing bundle was already used: each serves one inference")
        self.used = True
        return self.handle


class DealerRequired(ValueError):
    """The server uses the dealer provider and this client was given no dealer."""


def is_interactive(provider: str) -> bool:
    """True for a provider that needs no third party (the parties make the material together)."""
    return bool(getattr(get_provider(provider), "interactive", False))


class _DealerParty:
    """What both parties do with the dealer provider: each inference's material (named
    `session-n`) comes from the dealer service, then its offline messages go to the peer."""

    session: str
    n: int

    def setup(self, chan) -> None:
        pass        # nothing to agree on with the peer: the dealer correlates the material

    def offline(self, chan, batch: int) -> Bundle:
        t0 = time.perf_counter()
        inference = f"{self.session}-{self.n}"
        self.n += 1
        material, nbytes = self._fetch(chan, inference, batch)
        run = self._run(material, batch)
        confirm_bundle(chan, material)
        run.offline(chan)
        return Bundle(batch, run, nbytes, nbytes, time.perf_counter() - t0)


class DealerServer(_DealerParty):
    """The server's side with the dealer provider: material from the dealer service."""

    def __init__(self, plan, weights, dealer, session: str, timeout: float = 60.0,
                 max_frame_size: int | None = None) -> None:
        if dealer is None:
            raise ValueError("the dealer provider needs a dealer: give the server the dealer's address and "
                             "fingerprint (--dealer-host/--dealer-port/--dealer-fingerprint)")
        self.plan, self.weights, self.dealer, self.session = plan, weights, dealer, session
        self.timeout, self.max_frame_size, self.n = timeout, max_frame_size, 0

    def _fetch(self, chan, inference: str, batch: int):
        return fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls, "server", inference, self.plan,
                              batch, timeout=self.timeout, max_frame_size=self.max_frame_size)

    def _run(self, material, batch: int):
        return engine.ServerRun(self.plan, self.weights, material, batch)

    def online(self, chan, bundle: Bundle) -> float:
        run = bundle.take()
        run.online(chan)
        return run.timings["online_s"]


class DealerClient(_DealerParty):
    """The client's side with the dealer provider."""

    def __init__(self, plan, dealer, session: str, timeout: float = 60.0) -> None:
        if dealer is None:
            raise DealerRequired("this server uses the dealer provider: give the client the dealer's address and "
                                 "fingerprint (--dealer-host/--dealer-port/--dealer-fingerprint, and --cert/--key)")
        self.plan, self.dealer, self.session, self.timeout, self.n = plan, dealer, session, timeout, 0

    def _fetch(self, chan, inference: str, batch: int):
        try:
            return fetch_material(self.dealer.host, self.dealer.port, self.dealer.tls, "client", inference,
                                  self.plan, batch, timeout=self.timeout)
        except (TransportError, ValueError) as exc:
            # The server is waiting for this inference's offline messages: tell it why none come.
            try:
                chan.send_error(f"the client got no material from its dealer: {exc}")
            except Exception:  # noqa: BLE001, S110 -- best effort: the dealer's error is raised next
                pass
            raise

    def _run(self, material, batch: int):
        return engine.ClientRun(self.plan, material, batch)

    def online(self, chan, bundle: Bundle, x):
        run = bundle.take()
        y = run.online(chan, x)
        return y, run.timings["online_s"]


class InteractiveServer:
    """The server's side with an interactive provider (no third party)."""

    def __init__(self, provider: str, plan, weights) -> None:
        self.session = get_provider(provider).server_session(plan, weights)

    def setup(self, chan) -> None:
        self.session.setup(chan)

    def offline(self, chan, batch: int) -> Bundle:
        t0 = time.perf_counter()
        b = self.session.offline(chan, batch)
        return Bundle(batch, b, 0, int(getattr(b, "held_bytes", 0)), time.perf_counter() - t0)

    def online(self, chan, bundle: Bundle) -> float:
        self.session.online(chan, bundle.take())
        return self.session.timings["online_s"]


class InteractiveClient:
    """The client's side with an interactive provider."""

    def __init__(self, provider: str, plan) -> None:
        self.session = get_provider(provider).client_session(plan)

    def setup(self, chan) -> None:
        self.session.setup(chan)

    def offline(self, chan, batch: int) -> Bundle:
        t0 = time.perf_counter()
        b = self.session.offline(chan, batch)
        return Bundle(batch, b, 0, int(b.stored_bytes), time.perf_counter() - t0)

    def online(self, chan, bundle: Bundle, x):
        y = self.session.online(chan, bundle.take(), x)
        return y, self.session.timings["online_s"]


def server_party(provider: str, plan, weights, dealer, session: str, **dealer_options):
    if is_interactive(provider):
        return InteractiveServer(provider, plan, weights)
    return DealerServer(plan, weights, dealer, session, **dealer_options)


def client_party(provider: str, plan, dealer, session: str, timeout: float = 60.0):
    if is_interactive(provider):
        return InteractiveClient(provider, plan)
    return DealerClient(plan, dealer, session, timeout)
