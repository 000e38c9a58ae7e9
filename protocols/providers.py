"""Preprocessing providers: where one-time correlated randomness comes from.

A provider has a name and makes, for a plan and a batch size, the client's and the server's
material for one inference. Layers never know which provider made their material.

- `dealer`: a third party that never sees inputs, weights or outputs generates everything
  (secure only if it colludes with neither party). In-process here; `pi dealer` runs it as
  its own process over TLS.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from protocols.material import Material
from protocols.plan import Plan


class Provider(ABC):
    name: str = ""
    security_note: str = ""

    @abstractmethod
    def preprocess(self, plan: Plan, batch: int) -> tuple[Material, Material]:
        """(client material, server material) for one inference."""


class DealerProvider(Provider):
    name = "dealer"
    security_note = "secure if the dealer colludes with neither the client nor the server"

    def preprocess(self, plan: Plan, batch: int) -> tuple[Material, Material]:
        from protocols.engine import deal
        return deal(plan, batch)


PROVIDERS: dict[str, type[Provider]] = {DealerProvider.name: DealerProvider}


def get_provider(name: str) -> Provider:
    if name not in PROVIDERS:
        raise ValueError(f"unknown provider {name!r}; available: {', '.join(PROVIDERS)}")
    return PROVIDERS[name]()
