"""The delay relay of the peer benchmarks: listens on PORT, forwards each connection to
UPSTREAM (HOST:PORT) and back, every chunk written DELAY_MS/2 after it was read, in order.
HTTP request lines and the time each response's first byte went back are logged to LOG.

Usage: python3 delay_relay.py [HOST:]PORT UPSTREAM DELAY_MS LOG (HOST: 127.0.0.1 unless given)
"""
import asyncio, sys, time
listen, upstream, one_way, log_path = sys.argv[1], sys.argv[2], float(sys.argv[3]) / 2000, sys.argv[4]
listen_host, _, listen = listen.rpartition(":")
listen_host, listen = listen_host or "127.0.0.1", int(listen)
log = open(log_path, "a", buffering=1)
async def pump(reader, writer, requests, waiting):
    q = asyncio.Queue()
    async def send():
        while True:
            at, data = await q.get()
            if data is None:
                writer.close()
                return
            delay = at + one_way - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if requests is None and waiting:
                log.write(f"FIRST {time.time():.6f} {waiting.pop(0)}\n")
            writer.write(data)
            await writer.drain()
    task = asyncio.create_task(send())
    head = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        if requests is not None:
            head += data
            while b"\r\n\r\n" in head:
                req, head = head.split(b"\r\n\r\n", 1)
                line = req.split(b"\r\n", 1)[0].decode(errors="replace")
                log.write(f"GET {time.time():.6f} {line}\n")
                requests.append(line)
        q.put_nowait((time.monotonic(), data))
    q.put_nowait((0, None))
    await task
async def handle(cr, cw):
    host, port = upstream.rsplit(":", 1)
    ur, uw = await asyncio.open_connection(host, int(port))
    pending = []
    # A response's first byte is logged when it is sent to the edge, once per request.
    await asyncio.gather(pump(cr, uw, pending, None), pump(ur, cw, None, pending))
async def main():
    server = await asyncio.start_server(handle, listen_host, listen)
    async with server:
        await server.serve_forever()
asyncio.run(main())
