"""httpx's AsyncClient on ringtrio in trio mode: GET, POST (a streamed upload
too) and a streamed download, against an HTTP/1.1 server served by ringtrio,
over TCP and over TLS (a trustme certificate)."""

from __future__ import annotations

import _harness  # first: enables trio mode

import ssl
from collections.abc import AsyncIterator

import h11
import httpx
import sniffio
import trio
import trustme

import ringtrio

# The streamed download sends its chunks one by one, each only after the
# client has received the one before: a client that buffered the whole
# response would never see the first chunk, and the run would time out.
STREAM_CHUNKS = 5


class Server:
    def __init__(self) -> None:
        self.next_chunk = ringtrio.Event()

    async def handle(self, stream: ringtrio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                await self.respond(stream, conn, request, bytes(body))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
                body.clear()
            else:  # ConnectionClosed, or PAUSED after the client closed
                return

    async def respond(self, stream: ringtrio.abc.Stream, conn: h11.Connection, request: h11.Request, body: bytes) -> None:
        if request.target == b"/stream":
            head = h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
            await stream.send_all(conn.send(head))
            for i in range(STREAM_CHUNKS):
                if i:
                    await self.next_chunk.wait()
                    self.next_chunk = ringtrio.Event()
                await stream.send_all(conn.send(h11.Data(data=b"chunk %d;" % i)))
        else:
            reply = body if request.method == b"POST" else b"hello from " + request.target
            head = h11.Response(status_code=200, headers=[("content-length", str(len(reply)))])
            await stream.send_all(conn.send(head) + conn.send(h11.Data(data=reply)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def upload() -> AsyncIterator[bytes]:
    for i in range(4):
        await trio.sleep(0)
        yield bytes([i]) * 16384


async def exercise(server: Server, base: str, verify: ssl.SSLContext | bool) -> dict[str, object]:
    result: dict[str, object] = {}
    async with httpx.AsyncClient(verify=verify) as client:
        response = await client.get(base + "/path")
        result["get"] = [response.status_code, response.text]
        network = response.extensions["network_stream"]
        ssl_object = network.get_extra_info("ssl_object")
        result["tls_version"] = ssl_object.version() if ssl_object is not None else None
        # httpcore's trio backend wraps a trio stream: here, one of ringtrio's.
        result["transport"] = type(network._stream).__module__ + "." + type(network._stream).__qualname__

        payload = bytes(range(256)) * 4096  # 1 MiB
        response = await client.post(base + "/echo", content=payload)
        result["post_ok"] = response.status_code == 200 and response.content == payload
        response = await client.post(base + "/echo", content=upload())
        result["streamed_upload_ok"] = response.content == b"".join(bytes([i]) * 16384 for i in range(4))

        chunks = []
        async with client.stream("GET", base + "/stream") as response:
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                server.next_chunk.set()
        result["stream_text"] = b"".join(chunks).decode()
        result["stream_chunk_count"] = len(chunks)
    return result


async def main() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = Server()
    results: dict[str, object] = {"sniffio": sniffio.current_async_library()}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            tcp = await nursery.start(trio.serve_tcp, server.handle, 0)
            tls = await nursery.start(trio.serve_ssl_over_tcp, server.handle, 0, server_context)
            tcp_port = tcp[0].socket.getsockname()[1]
            tls_port = tls[0].transport_listener.socket.getsockname()[1]
            for name, base, verify in (
                ("tcp", f"http://127.0.0.1:{tcp_port}", True),
                ("tls", f"https://127.0.0.1:{tls_port}", client_context),
            ):
                before = _harness.ring_counts()
                results[name] = await exercise(server, base, verify)
                results[name]["ring"] = _harness.grew(before, _harness.ring_counts())
            nursery.cancel_scope.cancel()
    _harness.report(**results)


trio.run(main)
