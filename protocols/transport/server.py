"""An accept loop that no single peer can hold up.

`ConnectionServer` takes TCP connections from a `Listener` and runs, for each one, the TLS
handshake and then the protocol handler on a thread of its own, so a peer that never starts
TLS, or never sends its first frame, costs one thread until its deadline (the listener's
`handshake_timeout`, then the handler's own first-frame timeout) and delays nobody else.

At most `max_connections` connections are served at once. One beyond the cap still gets a
TLS handshake and an ERROR frame saying the server is busy (its `recv` raises RemoteError),
on a thread of its own; beyond `max_connections` such refusals in progress, new connections
are closed at once (the client's handshake fails).
"""
from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from protocols.transport.channel import Listener, TlsChannel
from protocols.transport.errors import TransportError

log = logging.getLogger("pi.transport")
DEFAULT_MAX_CONNECTIONS = 64


class ConnectionServer:
    """Runs `handler(channel)` for every client of `listener`, one thread per connection.

    The handler owns the channel (it must close it). `name` appears in logs and in the
    busy refusal ("the dealer is at its connection limit ...")."""

    def __init__(self, listener: Listener, handler: Callable[[TlsChannel], None], *, name: str = "server",
                 max_connections: int = DEFAULT_MAX_CONNECTIONS) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"max_connections must be an int >= 1, got {max_connections!r}")
        self.listener, self.handler, self.name = listener, handler, name
        self.max_connections = max_connections
        self._active = 0
        self._refusing = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refused = 0

    @property
    def active(self) -> int:
        """Connections being served now (handshake or handler)."""
        return self._active

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                raw, addr = self.listener.accept_socket(timeout=0.5)
            except TimeoutError:
                continue
            except OSError as exc:              # the listening socket was closed
                if self._stop.is_set():
                    return
                log.warning("%s: accept failed: %s", self.name, exc)
                continue
            with self._lock:
                if self._active < self.max_connections:
                    self._active += 1
                    target = self._serve
                elif self._refusing < self.max_connections:
                    self._refusing += 1
                    self.refused += 1
                    target = self._refuse
                else:
                    self.refused += 1
                    target = None
            if target is None:
                log.warning("%s: dropped a connection from %s:%s (at the connection limit)", self.name, *addr[:2])
                _close(raw)
                continue
            threading.Thread(target=target, args=(raw, addr), daemon=True,
                             name=f"{self.name}-{addr[0]}:{addr[1]}").start()

    def _serve(self, raw: socket.socket, addr: tuple) -> None:
        try:
            try:
                chan = self.listener.handshake(raw, addr)
            except TransportError as exc:       # a failed handshake only affects that peer
                log.warning("%s: rejected a connection: %s", self.name, exc)
                return
            try:
                self.handler(chan)
            except Exception:                   # the handler reports its own errors; never die
                log.exception("%s: connection handler failed", self.name)
            finally:
                chan.close()
        finally:
            with self._lock:
                self._active -= 1

    def _refuse(self, raw: socket.socket, addr: tuple) -> None:
        try:
            chan = self.listener.handshake(raw, addr)
            with chan:
                chan.send_error(f"the {self.name} is at its connection limit ({self.max_connections} open "
                                f"connections); try again later")
            log.warning("%s: refused %s:%s, at the connection limit (%d)", self.name, *addr[:2],
                        self.max_connections)
        except TransportError as exc:
            log.warning("%s: refused a connection over the limit: %s", self.name, exc)
        finally:
            with self._lock:
                self._refusing -= 1


def _close(raw: socket.socket) -> None:
    try:
        raw.close()
    except OSError:
        pass
