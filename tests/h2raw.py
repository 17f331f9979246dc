"""A gRPC client written frame by frame over HTTP/2, for attacks no grpc client can make: calls whose
replies it never reads (a window of 0) and messages it never finishes sending. The tests
(tests/server/test_attacks_variants.py) and the full-size attacks (bench/attacks.py) use it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Callable

_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
_MAX_FRAME = 16_384  # HTTP/2's default SETTINGS_MAX_FRAME_SIZE


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing (new name), lengths under 127."""
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


class NonReadingClient:
    """An HTTP/2 gRPC client that opens calls but gives the server no window to send replies in
    (SETTINGS_INITIAL_WINDOW_SIZE = 0): it answers the server's SETTINGS and PINGs, so the
    connection stays healthy, and never reads a reply. It sends within the windows the server
    grants, as a client must."""

    def __init__(self, port: int, source: str, *, goaway_ok: bool = False) -> None:
        """A client of `port` on 127.0.0.1, connecting from the address `source`; `goaway_ok`: the
        server may close the connection (a drain), else a GOAWAY fails the test."""
        self.port = port
        self.source = source
        self.goaway_ok = goaway_ok
        self.window = 65_535  # the server's connection-level window for our requests
        self.initial_window = 65_535  # each new stream's, until the server's SETTINGS say otherwise
        self.windows: dict[int, int] = {}  # each open stream's
        self.granted = asyncio.Event()
        self.next_stream = 1
        self.sent = 0  # bytes of messages sent
        self.finished = 0  # calls the server ended without a reply (trailers only: refusals)

    async def __aenter__(self) -> NonReadingClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        settings = struct.pack(">HI", 0x4, 0) + struct.pack(">HI", 0x2, 0)  # window 0, no push
        self.writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(_SETTINGS, 0, 0, settings))
        self.task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await self.task
        self.writer.close()

    async def _read(self) -> None:
        while True:
            head = await self.reader.readexactly(9)
            length = int.from_bytes(head[:3], "big")
            kind, flags, stream = head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
            payload = await self.reader.readexactly(length)
            if kind == _SETTINGS and not flags & 1:
                self._settings(payload)
                self.writer.write(_frame(_SETTINGS, 1, 0))
            elif kind == _PING and not flags & 1:
                self.writer.write(_frame(_PING, 1, 0, payload))
            elif kind == _WINDOW_UPDATE:
                increment = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                if stream == 0:
                    self.window += increment
                elif stream in self.windows:
                    self.windows[stream] += increment
                self.granted.set()
            elif kind == _HEADERS and flags & 1:
                self.finished += 1
                self.windows.pop(stream, None)
            elif kind == _RST_STREAM:
                self.windows.pop(stream, None)
            elif kind == _GOAWAY:
                if self.goaway_ok:
                    return
                raise AssertionError(f"GOAWAY {payload!r}")

    def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload), 6):
            key, value = struct.unpack(">HI", payload[offset : offset + 6])
            if key == 0x4:  # SETTINGS_INITIAL_WINDOW_SIZE: applies to open streams too
                for stream in self.windows:
                    self.windows[stream] += value - self.initial_window
                self.initial_window = value

    async def call(self, method: str, message: bytes) -> None:
        await self.send(method, b"\x00" + struct.pack(">I", len(message)) + message, end=True)

    async def start_call(self, method: str, declared: int, sent: int) -> None:
        """Open a call whose message declares `declared` bytes, send the first `sent` bytes (as
        far as the windows the server grants within a moment allow), and stop."""
        await self.send(method, b"\x00" + struct.pack(">I", declared) + bytes(sent - 5), end=False)

    async def send(self, method: str, body: bytes, *, end: bool) -> None:
        """Open a call of chainrule's `method` (or of another service's, by its path: `/grpc.health.v1.
        Health/Watch`) and send `body`; a whole message (`end`) waits for the windows it needs, up to
        10 s, a partial one for 0.1 s at most."""
        path = method if method.startswith("/") else f"/chainrule.v1.DifferentiationService/{method}"
        headers = b"".join(
            _literal(name, value)
            for name, value in (
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            )
        )
        stream, self.next_stream = self.next_stream, self.next_stream + 2
        self.windows[stream] = self.initial_window
        self.writer.write(_frame(_HEADERS, 0x4, stream, headers))
        deadline = asyncio.get_running_loop().time() + (10 if end else 0.1)
        position = 0
        while position < len(body):
            room = min(self.window, self.windows.get(stream, 0), _MAX_FRAME, len(body) - position)
            if room <= 0:
                self.granted.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await self.granted.wait()
                except TimeoutError:
                    assert not end, f"no window for a {len(body)}-byte message"
                    break
                continue
            last = end and position + room == len(body)
            self.writer.write(_frame(_DATA, 0x1 if last else 0, stream, body[position : position + room]))
            position += room
            self.window -= room
            self.windows[stream] -= room
            self.sent += room
        await self.writer.drain()


def endless_header_block(port: int, method: str, stop: Callable[[], bool], source: str = "127.0.0.1") -> int:
    """Open a gRPC call whose header block never ends: a HEADERS frame without END_HEADERS, then
    CONTINUATION frames of junk headers as fast as the socket takes them, until `stop()` (blocking:
    run it on a thread). grpc keeps parsing such a block, past its metadata limit too. Returns the
    bytes sent."""
    junk = b"".join(_frame(_CONTINUATION, 0, 1, _literal(f"x-pad-{i}", "v" * 100)) for i in range(100))
    return _flood(port, source, _frame(_HEADERS, 0, 1, _call_head(method)), lambda _: junk, stop)


def calls_without_messages(
    port: int, method: str, stop: Callable[[], bool], source: str = "127.0.0.1"
) -> int:
    """Open gRPC calls that end before any message (HEADERS with END_STREAM), 100 a write, as fast
    as the socket takes them, until `stop()` (blocking: run it on a thread). Returns the bytes sent."""
    head = _call_head(method)
    window = _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20))

    def batch(index: int) -> bytes:
        first = 1 + 200 * index
        if first + 200 >= 2**31:
            raise OSError("stream ids used up")
        return (
            b"".join(_frame(_HEADERS, _END_STREAM | _END_HEADERS, first + 2 * k, head) for k in range(100))
            + window
        )

    return _flood(port, source, b"", batch, stop)


_CONTINUATION = 9
_END_STREAM, _END_HEADERS = 0x1, 0x4


def _call_head(method: str) -> bytes:
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", method),
        (":authority", "x"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    return b"".join(_literal(name, value) for name, value in fields)


def _flood(
    port: int, source: str, first: bytes, then: Callable[[int], bytes], stop: Callable[[], bool]
) -> int:
    """Send the preface, `first`, then `then(0)`, `then(1)`... until `stop()` or the connection ends;
    what the server sends is read and dropped. The bytes sent."""
    sent = 0
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), source_address=(source, 0)) as sock,
    ):
        threading.Thread(target=_discard, args=(sock,), daemon=True).start()
        opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(_SETTINGS, 0, 0) + first
        sock.sendall(opening)
        sent += len(opening)
        index = 0
        while not stop():
            data = then(index)
            sock.sendall(data)
            sent += len(data)
            index += 1
    return sent


def _discard(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(65536):
            pass
