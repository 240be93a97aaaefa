"""trio-websocket on ringtrio in trio mode: its own echo server and client
exchange a text message, a 1 MiB binary message and a ping, and close
cleanly (code 1000 seen on both ends)."""

from __future__ import annotations

import _harness  # first: enables trio mode

import hashlib

import sniffio
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, open_websocket_url, serve_websocket

server_saw: dict[str, object] = {}


async def echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed as closed:
        server_saw["close_code"] = closed.reason.code


async def main() -> None:
    result: dict[str, object] = {"sniffio": sniffio.current_async_library()}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, None)
            before = _harness.ring_counts()
            async with open_websocket_url(f"ws://127.0.0.1:{server.port}/echo") as ws:
                await ws.send_message("hello, ringtrio")
                result["text"] = await ws.get_message()
                payload = bytes(range(256)) * 4096  # 1 MiB
                await ws.send_message(payload)
                echoed = await ws.get_message()
                result["binary_len"] = len(echoed)
                result["binary_ok"] = hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
                await ws.ping(b"are you there")  # returns when the pong has come back
                result["pong"] = True
            result["client_close_code"] = ws.closed.code
            # The server's handler sees the close in its own task: wait for it.
            while "close_code" not in server_saw:
                await trio.sleep(0.01)
            result["server_close_code"] = server_saw["close_code"]
            result["ring"] = _harness.grew(before, _harness.ring_counts())
            nursery.cancel_scope.cancel()
    _harness.report(**result)


trio.run(main)
