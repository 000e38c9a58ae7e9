"""Polynomial sites in the two-party mode: one batch of OT products per activation layer
(protocols.ot_mul, docs/two_party.md "Polynomial sites").

Offline the client sends the IKNP message for its choice bits (bits of its own input share)
and folds its local terms and its output mask s_out into one word per site; online the server
sends its corrections with the garbled circuits' labels (one flight), the client answers W with
the other sites' re-shares (one flight). The products run mod 2^(l + d) and both shares are
shifted right by d (ot_mul.PolySpec.out_shift, as the dealer's gate): the client's output share
is −s_out, the server's (p(t) >> d) + s_out, both at the layer's output scale 3f − d: no
rescaling after the gate."""
from __future__ import annotations

import numpy as np

from protocols import ot_mul
from protocols.fixed_point import Ring
from protocols.layers import poly_coefficients, poly_out_shift
from protocols.plan import POLY, Activation, PlanError
from protocols.two_party.wire import peer_fault, recv_bytes, recv_ring, send_bytes, send_ring


class PolyGroup:
    """The polynomial sites `idx` of an activation op (positions in the layer's flat input),
    with the same steps as a GateGroup."""
    scales_up = False      # its output is at the layer's output scale already

    def __init__(self, label: str, plan, op, batch: int, idx: np.ndarray) -> None:
        self.label, self.n, self.ring = label, len(idx), plan.ring
        d = poly_out_shift(plan, op)
        if plan.ring_bits + d > ot_mul.MAX_L:
            raise PlanError(f"activation {op.name}: its polynomial sites compute in {plan.ring_bits + d}-bit words "
                            f"(a plan for the dealer's gate); the two-party products run in at most {ot_mul.MAX_L}: "
                            "compile the model for the two-party provider")
        try:
            self.spec = ot_mul.PolySpec(plan.ring_bits + d, op.shift, op.value_bits, out_shift=d)
        except ValueError as exc:
            raise PlanError(f"activation {op.name}: {exc}") from None
        compute = Ring(self.spec.l)
        self.coeffs = tuple(compute.reduce(c) for c in poly_coefficients(plan, op, batch, idx))

    # -- offline
    def client_out(self, cs) -> np.ndarray:
        s_out = cs.stream.draw(f"{self.label}/s_out", self.n)
        cs.keep[f"{self.label}/s_out"] = s_out
        return self.ring.reduce(-s_out)

    def client_send(self, cs, c_in: np.ndarray, flight) -> None:
        s_out = self.ring.reduce(cs.keep.pop(f"{self.label}/s_out"))
        pcb, msg = ot_mul.poly_client_offline(cs.mul, self.spec, self.ring.reduce(c_in), self.coeffs, s_out)
        cs.keep[self.label] = pcb
        flight.put(f"{self.label}/ot", msg)

    def server_reply(self, ss, items: dict, flight) -> None:
        with peer_fault(f"{self.label}: OT message"):
            ss.keep[self.label] = ot_mul.poly_server_offline(ss.mul, self.spec, self.n, self.coeffs,
                                                             items[f"{self.label}/ot"])

    def client_recv(self, cs, items: dict) -> None:
        pass

    def client_names(self) -> set[str]:
        return {f"{self.label}/ot"}

    def server_names(self) -> set[str]:
        return set()

    def stored_bytes(self, cs) -> int:
        """Its choice bits and one ring word per site (ot_mul.poly_cost)."""
        return cs.keep[self.label].stored_bytes

    # -- online
    def server_send(self, ss, a_in: np.ndarray, chan) -> None:
        send_bytes(chan, ot_mul.poly_server_online(ss.mul, ss.keep[self.label], self.ring.reduce(a_in)))

    def client_online(self, cs, stream, chan) -> None:
        pcb = cs.keep.pop(self.label)
        corrections = recv_bytes(chan)
        with peer_fault(f"{self.label}: OT corrections"):
            cs.keep[f"{self.label}/reply"] = ot_mul.poly_client_online(cs.mul, pcb, corrections)

    def client_reply(self, cs, chan) -> None:
        send_ring(chan, self.ring, cs.keep.pop(f"{self.label}/reply"))

    def server_recv(self, ss, chan) -> np.ndarray:
        """The server's share of p(t) + s_out."""
        W = recv_ring(chan, self.ring, self.n, f"{self.label}: W")
        return ot_mul.poly_server_finish(ss.keep.pop(self.label), W)


def has_poly(plan) -> bool:
    """Whether a plan has polynomial sites (then the sessions set up the products' OT session)."""
    return any(isinstance(op, Activation) and op.kinds is not None and bool((op.kinds == POLY).any())
               for op in plan.ops)
