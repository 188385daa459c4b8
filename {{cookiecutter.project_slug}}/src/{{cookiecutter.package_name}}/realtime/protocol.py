"""uvicorn's WebSocket protocol with a small kernel send buffer (serve with
`--ws {{ cookiecutter.package_name }}.realtime.protocol:WebSocketProtocol`, as the Dockerfile and
`make run` do).

Left alone, Linux grows a socket's send buffer to megabytes for a client that stops reading.
That client's backlog would pile up in the kernel, out of its outbox's sight (hub.Outbox),
and it would be told 1013 only after megabytes and tens of seconds. With SEND_BUFFER_BYTES,
what the kernel holds for it stays small and its outbox fills within a second or so
(tests/integration/test_realtime.py measures both). Only upgraded connections get it: plain
HTTP responses keep the kernel's default.
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
