"""uvicorn's WebSocket protocol with a small kernel send buffer (serve with
`--ws {{ cookiecutter.package_name }}.realtime.protocol:WebSocketProtocol`, as the Dockerfile and
`make run` do).

Left alone, Linux grows a socket's send buffer to megabytes for a client that stops reading.
That client's backlog piles up in the kernel, out of its outbox's sight (hub.Outbox): sent
1 KiB messages at 500 a second, such a client was still connected after 10 s, 3.8 MB held
for it (measured by hand before this class). With SEND_BUFFER_BYTES its outbox fills and it
is closed with 1013 within 2 s, at most 1 MiB held (tests/integration/test_realtime.py).
Only upgraded connections get it: plain HTTP responses keep the kernel's default.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SEND_BUFFER_BYTES = 65_536  # Linux keeps up to twice this


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        super().connection_made(transport)
