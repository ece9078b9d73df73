"""An independent HTTP/3 client for the end-to-end tests (aioquic, from PyPI).

Usage: h3get.py HOST PORT CA_PEM < requests.json > responses.json

requests.json is a list of [method, path], [method, path, {header: value}] or [method, path,
{header: value}, body text]; every request goes over one QUIC connection, one after another
(a body goes in one DATA frame after the HEADERS, and ends the stream). The answer is a list of
{"status": int, "headers": [[name, value], ...], "body": hex} or {"error": "..."} per
request, then {"alpn": ..., "migrations": ...} as the last element.
"""

import asyncio
import json
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamReset


class Http3(H3Connection):
    """aioquic checks a response's Content-Length against its body, even for HEAD, whose
    response announces the length a GET would get and carries no body (RFC 9114 §4.1,
    RFC 9110 §9.3.2): the check is skipped for the streams of HEAD requests."""

    def __init__(self, quic):
        super().__init__(quic)
        self.head_streams = set()

    def _check_content_length(self, stream):
        if stream.stream_id not in self.head_streams:
            super()._check_content_length(stream)


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = Http3(self._quic)
        self.waiting = {}

    async def request(self, method, authority, path, headers, body=None):
        stream_id = self._quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"user-agent", b"aioquic-test"),
        ] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if method == "HEAD":
            self.h3.head_streams.add(stream_id)
        self.h3.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=True)
        done = self._loop.create_future()
        self.waiting[stream_id] = {"done": done, "status": None, "headers": [], "body": bytearray()}
        self.transmit()
        return await asyncio.wait_for(done, 60)

    def quic_event_received(self, event: QuicEvent):
        if isinstance(event, StreamReset) and event.stream_id in self.waiting:
            w = self.waiting.pop(event.stream_id)
            w["done"].set_result({"error": f"reset {event.error_code:#x}"})
            return
        for e in self.h3.handle_event(event):
            w = self.waiting.get(e.stream_id)
            if w is None:
                continue
            if isinstance(e, HeadersReceived):
                if w["status"] is None:
                    for k, v in e.headers:
                        if k == b":status":
                            w["status"] = int(v)
                        else:
                            w["headers"].append([k.decode(), v.decode()])
            elif isinstance(e, DataReceived):
                w["body"] += e.data
            if getattr(e, "stream_ended", False):
                self.waiting.pop(e.stream_id)
                w["done"].set_result({
                    "status": w["status"],
                    "headers": w["headers"],
                    "body": bytes(w["body"]).hex(),
                })


async def main():
    host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    requests = json.load(sys.stdin)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = "localhost"
    out = []
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        for r in requests:
            method, path = r[0], r[1]
            headers = r[2] if len(r) > 2 else {}
            body = r[3].encode() if len(r) > 3 else None
            try:
                out.append(await client.request(method, f"{host}:{port}", path, headers, body))
            except Exception as e:  # a refused stream or a timeout: reported, not raised
                out.append({"error": repr(e)})
        out.append({"alpn": client._quic.tls.alpn_negotiated})
    json.dump(out, sys.stdout)


async def one_request(host, port, ca, method, path, headers, body=None):
    """One request on a connection of its own (for other test clients): the response as
    main() reports it."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = "localhost"
    async with connect(host, port, configuration=config, create_protocol=Client) as client:
        if isinstance(body, str):
            body = body.encode()
        return await client.request(method, f"{host}:{port}", path, headers, body)


if __name__ == "__main__":
    asyncio.run(main())
