"""The lean HTTP/1.1 transport the client uses for plain-http state managers: framing, keep-alive,
and failures surfacing as the same httpx exceptions (so retries behave as with httpx's own)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from exosphere_nb.client.http import HttpTransport, _Http11Transport, _lean_transport_fits

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


class RawServer:
    """A TCP server on 127.0.0.1 answering each request with `handler`; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while not reader.at_eof():
                try:
                    await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                await self.handler(reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def make(handler: Handler) -> RawServer:
        s = RawServer(handler)
        s.server = await asyncio.start_server(s._serve, "127.0.0.1", 0)
        servers.append(s)
        return s

    yield make
    for s in servers:
        assert s.server is not None
        s.server.close()


def _client(url: str, timeout: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, transport=_Http11Transport(), timeout=timeout)


async def test_keep_alive_content_length_and_chunked(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls % 2:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"n": "ok"}')
        else:
            writer.write(
                b'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"n"\r\n7\r\n: "ok"}\r\n0\r\n\r\n'
            )
        await writer.drain()

    server = await raw(handler)
    async with _client(server.url) as client:
        for i in range(6):
            res = await client.post("/x", json={"i": i})
            assert res.status_code == (200 if i % 2 == 0 else 201)
            assert res.json() == {"n": "ok"}
    assert server.connections == 1


async def test_a_connection_close_answer_is_not_reused(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await raw(handler)
    async with _client(server.url) as client:
        for _ in range(3):
            assert (await client.get("/x")).json() == {}
    assert server.connections == 3


async def test_failures_map_to_httpx_exceptions(raw: Callable[[Handler], Awaitable[RawServer]]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        writer.close()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async with _client((await raw(cut)).url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/x")
    async with _client((await raw(silent)).url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/x")
    async with _client((await raw(garbage)).url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with _client(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/x")


async def test_a_cancelled_request_does_not_leave_a_broken_connection_behind(
    raw: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    slow = True

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if slow:
            await asyncio.sleep(0.5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    server = await raw(handler)
    async with _client(server.url) as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/x"), 0.1)
        slow = False
        assert (await client.get("/x")).json() == {}  # a fresh connection, not the half-used one
    assert server.connections == 2


def test_used_only_for_plain_http_without_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert _lean_transport_fits("http://127.0.0.1:8000")
    assert not _lean_transport_fits("https://example.com")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    assert not _lean_transport_fits("http://10.1.2.3:8000")
    monkeypatch.setenv("no_proxy", "10.1.2.3")
    assert _lean_transport_fits("http://10.1.2.3:8000")


async def test_http_transport_uses_it_for_plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    transport = HttpTransport("ns", "http://127.0.0.1:1", "k")
    try:
        assert isinstance(transport.client._transport, _Http11Transport)
    finally:
        await transport.aclose()
