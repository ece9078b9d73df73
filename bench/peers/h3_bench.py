"""HLS viewers over HTTPS (TCP) or HTTP/3 (aioquic), for bench/peers/http3_loss.sh.

Usage: h3_bench.py PROTO HOST PORT CA STREAM VIEWERS SEGMENTS PARTS
  PROTO     https, h3, or h3-0rtt (a returning viewer: a first connection gets a session
            ticket, untimed; the timed one resumes with it and sends its first request in
            0-RTT)
  STREAM    app/name: /STREAM.m3u8 (HLS-TS) and /STREAM/llhls.m3u8 (LL-HLS) are read

Each viewer opens its own connection (a new viewer: TCP + TLS, or QUIC), fetches the HLS
playlist and its newest segments one after another, then the LL-HLS playlist and its newest
parts, as a player catching up would. Viewers run at once. Prints one JSON object:
  first_byte_ms  per viewer: from before its connect to the first body byte of its first
                 segment (playlist included: what a new viewer waits)
  segment_ms     every segment download: request sent to last byte
  segment_index  for each of those, its place in its viewer's run (0: the connection's first)
  part_ms        every part download
  bytes          body bytes read
  errors         failed requests
Both protocols use the same asyncio loop and the same request order; only the transport
differs.
"""

import asyncio
import json
import socket
import ssl
import sys
import time

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration

SO_RCVBUFFORCE = 33
proto, host, port, ca, stream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
viewers, n_segments, n_parts = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}

    async def get(self, path):
        """(status, body, seconds to first body byte, seconds to the end)."""
        sid = self._quic.get_next_available_stream_id()
        start = time.monotonic()
        self.h3.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                   (b":authority", b"localhost"), (b":path", path.encode())],
                             end_stream=True)
        w = {"done": self._loop.create_future(), "status": 0, "body": bytearray(), "first": None}
        self.waiting[sid] = w
        self.transmit()
        await asyncio.wait_for(w["done"], 60)
        end = time.monotonic()
        first = w["first"] or end
        return w["status"], bytes(w["body"]), first - start, end - start

    def quic_event_received(self, event):
        for e in self.h3.handle_event(event):
            w = self.waiting.get(e.stream_id)
            if w is None:
                continue
            if isinstance(e, HeadersReceived):
                for k, v in e.headers:
                    if k == b":status":
                        w["status"] = int(v)
            elif isinstance(e, DataReceived) and e.data:
                if w["first"] is None:
                    w["first"] = time.monotonic()
                w["body"] += e.data
            if getattr(e, "stream_ended", False):
                self.waiting.pop(e.stream_id)
                w["done"].set_result(None)


class HttpsClient:
    """HTTP/1.1 keep-alive over TLS, Content-Length bodies (what the engine sends for HLS)."""

    async def open(self):
        ctx = ssl.create_default_context(cafile=ca)
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")

    async def get(self, path):
        start = time.monotonic()
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = bytearray()
        first = None
        while len(body) < length:
            chunk = await self.reader.read(min(65536, length - len(body)))
            if not chunk:
                raise ConnectionError("closed mid-body")
            if first is None:
                first = time.monotonic()
            body += chunk
        end = time.monotonic()
        return status, bytes(body), (first or end) - start, end - start

    def close(self):
        self.writer.close()


def uris(playlist, marker):
    out = []
    for line in playlist.decode().splitlines():
        if marker == "segment" and line and not line.startswith("#"):
            out.append(line)
        if marker == "part" and line.startswith("#EXT-X-PART:"):
            out.append(line.split('URI="')[1].split('"')[0])
    return out


def quic_config(ticket):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.server_name = "localhost"
    config.session_ticket = ticket
    return config


async def viewer(result):
    try:
        ticket = None
        if proto == "h3-0rtt":
            tickets = []
            async with connect(host, port, configuration=quic_config(None), create_protocol=H3Client,
                               session_ticket_handler=tickets.append) as c:
                await c.get("/healthz")
                await c.ping()
            ticket = tickets[-1]
        start = time.monotonic()
        if proto in ("h3", "h3-0rtt"):
            async with connect(host, port, configuration=quic_config(ticket), create_protocol=H3Client,
                               wait_connected=ticket is None) as c:
                # Python reads datagrams far slower than the engine sends them: a socket
                # buffer of the default size overflows, and every datagram it drops is sent
                # again (SO_RCVBUFFORCE: root may pass rmem_max).
                sock = c._transport.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
                await watch(c, start, result)
        else:
            c = HttpsClient()
            await c.open()
            try:
                await watch(c, start, result)
            finally:
                c.close()
    except Exception as e:  # counted, and the run goes on
        result["errors"] += 1
        result.setdefault("error_samples", []).append(repr(e)[:200])


async def watch(c, start, result):
    app = stream.split("/")[0]
    status, playlist, _, _ = await c.get(f"/{stream}.m3u8")
    if status != 200:
        result["errors"] += 1
        return
    segments = uris(playlist, "segment")[-n_segments:] if n_segments else []
    for i, uri in enumerate(segments):
        status, body, first, total = await c.get(f"/{app}/{uri}")
        if status != 200:
            result["errors"] += 1
            continue
        if i == 0:
            result["first_byte_ms"].append((time.monotonic() - start - (total - first)) * 1000)
        result["segment_ms"].append(total * 1000)
        result["segment_index"].append(i)
        result["bytes"] += len(body)
    if not n_parts:
        return
    status, playlist, _, _ = await c.get(f"/{stream}/llhls.m3u8")
    if status != 200:
        result["errors"] += 1
        return
    for uri in uris(playlist, "part")[-n_parts:]:
        status, body, _, total = await c.get(f"/{stream}/{uri}")
        if status != 200:
            result["errors"] += 1
            continue
        result["part_ms"].append(total * 1000)
        result["bytes"] += len(body)


async def main():
    result = {"first_byte_ms": [], "segment_ms": [], "segment_index": [], "part_ms": [], "bytes": 0, "errors": 0}
    await asyncio.gather(*(viewer(result) for _ in range(viewers)))
    json.dump(result, sys.stdout)


asyncio.run(main())
