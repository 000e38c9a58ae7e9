"""Network profiles: what a measured loopback run would cost on a real link.

The benchmarks run every party on one machine over loopback, where bandwidth is nearly free
and a round trip takes microseconds. A profile turns the measured bytes and rounds into an
estimate for a link with a given bandwidth and round-trip time:

    estimate = measured seconds (compute, on loopback)
             + bytes · 8 / bandwidth          (all traffic, both directions, one shared pipe)
             + rounds · latency_per_round · RTT

`latency_per_round` is the number of round-trip times one counted round costs, a property of
the protocol's message pattern:

- ours (`pi`): a round is a flight from the server and the answer from the client (open x̂,
  return y0), i.e. one RTT;
- CrypTen: almost every counted round is a symmetric exchange in which both parties send at
  once (all_reduce / send+recv of an opening), i.e. one one-way latency = RTT/2.

The bandwidth term counts both directions on one pipe (a full-duplex link would carry them in
parallel), which overestimates transfer time by up to 2x for symmetric protocols; the loopback
time already includes the (small) loopback transfer time. These are estimates for comparing
systems, not predictions of a particular deployment.
"""
from __future__ import annotations

from dataclasses import dataclass

ROUND_RTT = {"pi": 1.0, "crypten": 0.5}


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    bandwidth_bps: float     # bits per second
    rtt_s: float             # round-trip time

    def describe(self) -> str:
        bw = self.bandwidth_bps
        bw_s = f"{bw / 1e9:g} Gbit/s" if bw >= 1e9 else f"{bw / 1e6:g} Mbit/s"
        return f"{self.name}: {bw_s}, RTT {self.rtt_s * 1e3:g} ms"

    def estimate(self, seconds: float | None, nbytes: float | None, rounds: float | None,
                 system: str = "pi") -> float | None:
        """Estimated seconds on this link; None if any input is unknown."""
        if seconds is None or nbytes is None or rounds is None:
            return None
        if system not in ROUND_RTT:
            raise ValueError(f"unknown system {system!r}; choose one of {', '.join(ROUND_RTT)}")
        return float(seconds) + 8.0 * float(nbytes) / self.bandwidth_bps + \
            float(rounds) * ROUND_RTT[system] * self.rtt_s


LAN = NetworkProfile("LAN", 1e9, 0.5e-3)
WAN = NetworkProfile("WAN", 100e6, 40e-3)
PROFILES = (LAN, WAN)


def add_estimates(row: dict, system: str) -> dict:
    """Adds lan_online_s / wan_online_s (and the offline ones where known) to a result row."""
    for p in PROFILES:
        key = p.name.lower()
        row[f"{key}_online_s"] = p.estimate(row.get("online_s"), row.get("online_bytes"), row.get("rounds"), system)
        row[f"{key}_offline_s"] = p.estimate(row.get("offline_s"), row.get("offline_bytes"),
                                             row.get("offline_rounds"), system)
    return row


def describe_all() -> str:
    return "; ".join(p.describe() for p in PROFILES)
