"""A network path in user space, for bench/peers/http3_loss.sh: two TUN devices, `eh3r` in
this (the host's) network namespace and `eh3v` in namespace NS, with every IP packet between
them held DELAY_MS/2 (a round trip of DELAY_MS) and a share LOSS_PERCENT dropped at random,
each way. TCP and UDP packets meet the same delay and loss, packet by packet (this kernel has
no netem). CONF is a file of two numbers, "DELAY_MS LOSS_PERCENT", read again whenever it
changes. The caller gives the devices their addresses once this prints "ready".

Usage: python3 tun_path.py NS CONF
"""
import ctypes
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF, IFF_TUN, IFF_NO_PI, CLONE_NEWNET = 0x400454CA, 0x0001, 0x1000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


ns, conf = sys.argv[1], sys.argv[2]
host = tun("eh3r")
ours = os.open("/proc/self/ns/net", os.O_RDONLY)
theirs = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
setns(theirs)
view = tun("eh3v")
setns(ours)
print("ready", flush=True)

one_way, loss, conf_mtime = 0.0, 0.0, None
pending = []  # (due, seq, fd, packet)
seq = 0
while True:
    try:
        m = os.stat(conf).st_mtime
        if m != conf_mtime:
            conf_mtime = m
            d, l = open(conf).read().split()
            one_way, loss = float(d) / 2000, float(l) / 100
    except (OSError, ValueError):
        pass
    now = time.monotonic()
    while pending and pending[0][0] <= now:
        _, _, fd, packet = heapq.heappop(pending)
        try:
            os.write(fd, packet)
        except OSError:
            pass
    timeout = min(0.1, max(0.0, pending[0][0] - now)) if pending else 0.1
    ready, _, _ = select.select([host, view], [], [], timeout)
    now = time.monotonic()
    for fd in ready:
        other = view if fd == host else host
        for _ in range(64):
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                break
            if loss and random.random() < loss:
                continue
            seq += 1
            heapq.heappush(pending, (now + one_way, seq, other, packet))
