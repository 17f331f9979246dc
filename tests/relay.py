"""Distinct callers on one machine: connections from other loopback addresses (127.0.0.2, 127.0.0.3).

The server tells callers apart by peer address (without auth). httpx can bind a client's source
address (`local_address`); grpc's client cannot, so `relay` listens on 127.0.0.1 (port 0) and
forwards each connection to the server from a socket bound to another loopback address: the server
sees that address as the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import grpc
import httpx


@contextlib.asynccontextmanager
async def relay(port: int, source: str) -> AsyncIterator[int]:
    """A port on 127.0.0.1 whose connections reach 127.0.0.1:`port` from `source`."""
    pipes: set[asyncio.Task[None]] = set()

    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        upstream_reader, upstream_writer = await asyncio.open_connection(sock=sock)
        for pipe in (_pipe(reader, upstream_writer), _pipe(upstream_reader, writer)):
            task = asyncio.ensure_future(pipe)
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(connect, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def grpc_channel_from(port: int, source: str) -> AsyncIterator[grpc.aio.Channel]:
    """A gRPC channel to the server on `port` whose calls come from `source`."""
    async with relay(port, source) as relayed:
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{relayed}", options=options) as channel:
            yield channel


def http_client_from(port: int, source: str, timeout: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client for the server on `port` whose requests come from `source`."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}", timeout=timeout)
