"""0-RTT for the end-to-end tests (aioquic, from PyPI): one connection to get a session
ticket, then RESUMES connections that resume with it and send every request at once, before
their handshake completes (in 0-RTT, when the server accepts early data).

Usage: h3early.py HOST PORT CA_PEM RESUMES < requests.json > result.json

requests.json is as h3get.py's. The first connection sends only the first request. The
result: {"first": answer, "resumed": [{"resumed": bool, "early_data_accepted": bool,
"answers": [answer, ...]}, ...]}, each answer as h3get.py reports it.
"""

import asyncio
import json
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from h3get import Client


def configuration(ca, ticket=None):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(ca)
    config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = "localhost"
    config.session_ticket = ticket
    return config


async def ask(client, authority, r):
    method, path = r[0], r[1]
    headers = r[2] if len(r) > 2 else {}
    body = r[3].encode() if len(r) > 3 else None
    try:
        return await client.request(method, authority, path, headers, body)
    except Exception as e:  # a refused stream or a timeout: reported, not raised
        return {"error": repr(e)}


async def main():
    host, port, ca, resumes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    requests = json.load(sys.stdin)
    authority = f"{host}:{port}"
    # Each resumption uses a ticket of its own, as clients do: the server takes early data
    # only from a session it has not resumed before (a replay finds it gone).
    tickets = []
    async with connect(host, port, configuration=configuration(ca), create_protocol=Client,
                       session_ticket_handler=tickets.append) as client:
        first = await ask(client, authority, requests[0])
        # The ticket comes after the handshake; a round trip more makes sure it is here.
        await client.ping()
    if not tickets:
        json.dump({"first": first, "resumed": [], "error": "no session ticket"}, sys.stdout)
        return
    resumed = []
    for _ in range(resumes):
        if not tickets:
            break
        async with connect(host, port, configuration=configuration(ca, tickets.pop()),
                           create_protocol=Client, wait_connected=False,
                           session_ticket_handler=tickets.append) as client:
            # Every request goes out now, before the handshake is complete.
            answers = await asyncio.gather(*(ask(client, authority, r) for r in requests))
            # A ping's acknowledgement comes in 1-RTT: the handshake is complete by then.
            # (Not wait_connected: aioquic notes the handshake only for a waiter that was
            # there when it completed.)
            await client.ping()
            tls = client._quic.tls
            resumed.append({
                "resumed": tls.session_resumed,
                "early_data_accepted": tls.early_data_accepted,
                "answers": answers,
            })
    json.dump({"first": first, "resumed": resumed}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
