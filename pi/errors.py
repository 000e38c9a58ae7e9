"""How the `pi` commands report a user's or a peer's error: one line that says what to do."""
from __future__ import annotations

from protocols.transport.errors import HandshakeError, PeerDisconnected, PeerVerificationError, TransportError
from relu_budget.runs import RunError  # a bad run / policy directory (pi demo, pi bench)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or a peer problem (not a bug): one line, no traceback."""
    return (ValueError, OSError, TransportError, OverflowError, RunError)


def error_line(exc: BaseException) -> str:
    """The one line a user sees for `exc`: its message, with the fix where we know it."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    if isinstance(exc, PeerVerificationError) or (isinstance(exc, HandshakeError) and "fingerprint" in msg):
        msg += " (pass the fingerprint `pi keys` printed for that peer, e.g. --server-fingerprint sha256:...)"
    elif isinstance(exc, ConnectionRefusedError) or (isinstance(exc, HandshakeError) and "refused" in msg):
        msg += " (is the peer running? check --server-host/--server-port and --dealer-host/--dealer-port)"
    elif isinstance(exc, PeerDisconnected):     # a server or dealer stopped mid-inference: it says why, not us
        msg += " (the server or the dealer stopped or dropped the connection: its log says why; run the command " \
               "again once it is back)"
    return msg
