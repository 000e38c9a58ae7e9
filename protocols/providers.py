"""Preprocessing providers: where one-time correlated randomness comes from.

A provider has a name and says how the client's and the server's one-time material for an
inference is made. Layers never know which provider made their material. Two shapes:

- a **dealt** provider (`DealtProvider.preprocess`) makes both halves without any interaction,
  from the public plan alone; the parties then run `protocols.engine` on them.
  `dealer`: a third party that never sees inputs, weights or outputs generates everything
  (secure only if it colludes with neither party). In-process here; `pi dealer` runs it as
  its own process over TLS.
- an **interactive** provider (`InteractiveProvider.sessions`) has no third party: the two
  parties make the material between themselves, over the same channel as the inference, with
  a session object per side (setup once per connection, offline → one bundle, online).
  `two-party`: HE for the linear layers, garbled circuits + OT for the gates
  (protocols.two_party, docs/two_party.md). Its rings are at most 59 bits wide (SEAL).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from protocols.fixed_point import RING_BITS
from protocols.material import Material
from protocols.plan import POLY_WORD_BITS, Plan, ServerWeights


class Provider(ABC):
    name: str = ""
    security_note: str = ""
    interactive: bool = False
    max_ring_bits: int = RING_BITS      # the widest ring Z_2^l its protocols run in
    poly_word_bits: int = POLY_WORD_BITS  # the widest words it computes polynomial sites in

    def calibrated_ring_bits(self, plan: Plan) -> int:
        """The ring this provider runs a plan in whose calibrated width is plan.ring_bits (a
        provider whose protocols truncate more sites locally may want a wider one)."""
        return plan.ring_bits


class DealtProvider(Provider):
    @abstractmethod
    def preprocess(self, plan: Plan, batch: int) -> tuple[Material, Material]:
        """(client material, server material) for one inference."""


class InteractiveProvider(Provider):
    interactive = True

    @abstractmethod
    def server_session(self, plan: Plan, weights: ServerWeights):
        """The server's session for one connection (setup / offline / online)."""

    @abstractmethod
    def client_session(self, plan: Plan):
        """The client's session for one connection."""


class DealerProvider(DealtProvider):
    name = "dealer"
    security_note = "secure if the dealer colludes with neither the client nor the server"

    def preprocess(self, plan: Plan, batch: int) -> tuple[Material, Material]:
        from protocols.engine import deal
        return deal(plan, batch)


class TwoPartyProvider(InteractiveProvider):
    name = "two-party"
    security_note = "client and server alone (semi-honest): HE for linear layers, garbled circuits + OT for gates"
    max_ring_bits = 59                  # SEAL's plain modulus t = 2^l (protocols.he.MAX_PLAIN_BITS)
    poly_word_bits = 64                 # its OT products run mod 2^l, l ≤ 64 (protocols.ot_mul.MAX_L)

    def server_session(self, plan: Plan, weights: ServerWeights):
        from protocols.two_party import ServerSession
        return ServerSession(plan, weights)

    def client_session(self, plan: Plan):
        from protocols.two_party import ClientSession
        return ClientSession(plan)


PROVIDERS: dict[str, type[Provider]] = {p.name: p for p in (DealerProvider, TwoPartyProvider)}


def get_provider(name: str) -> Provider:
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; available: {', '.join(PROVIDERS)}")
    return PROVIDERS[name]()
