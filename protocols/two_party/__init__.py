"""The dealer-free `two-party` mode: client and server alone (docs/two_party.md).

HE (protocols.he, SEAL BFV) makes the linear layers' correlations, garbled circuits and OT
(protocols.garbled) evaluate the ReLU sites; no third party. Modules:
  wire      what goes on the channel, checked (ring vectors, bytes, offline flights)
  layers    per op: the client's and the server's offline and online steps
  session   ServerSession / ClientSession: setup, offline (→ bundles), online
  local     both sessions in one process (tests, SecureModel.run)
"""
from protocols.two_party.session import (MAX_RING_BITS, ClientBundle, ClientSession, ServerBundle, ServerSession,
                                         check_plan)

__all__ = ["MAX_RING_BITS", "ClientBundle", "ClientSession", "ServerBundle", "ServerSession", "check_plan"]
