"""The UDP side of the peer benchmarks' delay: listens on HOST:PORT, forwards each client's
datagrams to UPSTREAM (HOST:PORT) from a socket of its own and back, every datagram sent
DELAY_MS/2 after it was received (a round trip of DELAY_MS), in order. The TCP side is
delay_relay.py. Loss is not made here: the scripts drop packets with nftables.

Usage: python3 udp_delay_relay.py HOST:PORT UPSTREAM DELAY_MS
"""
import asyncio
import sys

listen, upstream, one_way = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 2000
lhost, lport = listen.rsplit(":", 1)
uhost, uport = upstream.rsplit(":", 1)


class Back(asyncio.DatagramProtocol):
    """One client's socket towards the server."""

    def __init__(self, front, client):
        self.front, self.client = front, client

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, _addr):
        loop.call_later(one_way, self.front.sendto, data, self.client)


class Front(asyncio.DatagramProtocol):
    def __init__(self):
        self.backs = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        back = self.backs.get(addr)
        if back is None:
            back = self.backs[addr] = asyncio.ensure_future(
                loop.create_datagram_endpoint(
                    lambda: Back(self.transport, addr), remote_addr=(uhost, int(uport))))
        loop.call_later(one_way, self.forward, back, data)

    def forward(self, back, data):
        if back.done():
            back.result()[0].sendto(data)
        else:
            back.add_done_callback(lambda f: f.result()[0].sendto(data))


loop = asyncio.new_event_loop()
loop.run_until_complete(loop.create_datagram_endpoint(Front, local_addr=(lhost, int(lport))))
loop.run_forever()
