"""A TLS connection to a server that skips certificate checks, to send it bytes that are not
our protocol and read everything it answers (the garbage-input tests of serving and faults)."""
from __future__ import annotations

import socket
import ssl


def raw_tls(port: int, timeout: float = 10.0) -> ssl.SSLSocket:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=timeout))


def read_all(s: ssl.SSLSocket, timeout: float = 10.0) -> bytes:
    """Every byte until the server closes the connection (or goes quiet for `timeout`)."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ssl.SSLError, OSError):
        pass
    return out
