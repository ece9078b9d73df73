"""A WHEP client (aiortc) for the engine's tests: posts an offer for H.264 video, plays for
a while, and prints what it received as JSON on stdout.

Usage: whep_client.py URL SECONDS [--token TOKEN] [--no-delete] [--pli-after N]
                      [--h3 PORT CA_PEM]

Prints {"status": N, "location": ..., "units": [hex of each access unit, Annex B],
"timestamps": [each unit's RTP timestamp, from 0], "audio_frames": N, "audio_loud": N, ...}.
With --pli-after N, the client sends one PLI (RTCP picture loss) once it has N units and the
last IDR picture is at least 3 units back, and says after how many units as "pli_at". With
--h3, the offer is posted and the session deleted over HTTP/3 (aioquic) to UDP port PORT of
URL's host, trusting CA_PEM; media flows as ever. An access unit is what aiortc's depacketizer hands
its decoder: the NAL units of one RTP timestamp, each behind a start code; video is not
decoded, the test compares bytes. Audio is decoded by aiortc's own Opus decoder (libopus):
the frames it gave, and how many of them are not silence.
"""

import array
import asyncio
import json
import os
import sys
import urllib.request
import urllib.error

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import h264 as aio_h264
import aiortc.rtcrtpreceiver as receiver_mod

# The HTTP/3 tests' client (aioquic), for --h3.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "h3"))
import h3get  # noqa: E402


UNITS = []
TIMESTAMPS = []
# Set by main with --pli-after: (units before the PLI, the loop, the video receiver).
PLI = {"after": None, "at": None, "loop": None, "receiver": None, "last_idr": None}


def has_idr(annexb):
    return any((b & 0x1F) == 5 for b in nal_headers(annexb))


def nal_headers(annexb):
    i = annexb.find(b"\x00\x00\x01")
    while i >= 0 and i + 3 < len(annexb):
        yield annexb[i + 3]
        i = annexb.find(b"\x00\x00\x01", i + 3)


async def send_pli():
    receiver = PLI["receiver"]
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)


class RecordingDecoder:
    """Takes the place of aiortc's H.264 decoder: keeps each access unit's bytes (and sends
    the one PLI asked for; this runs on aiortc's decoder thread)."""

    def decode(self, encoded_frame):
        data = bytes(encoded_frame.data)
        UNITS.append(data)
        TIMESTAMPS.append(encoded_frame.timestamp)
        if has_idr(data):
            PLI["last_idr"] = len(UNITS) - 1
        after = PLI["after"]
        if (
            after is not None
            and PLI["at"] is None
            and len(UNITS) >= after
            and PLI["last_idr"] is not None
            and len(UNITS) - 1 - PLI["last_idr"] >= 3
        ):
            PLI["at"] = len(UNITS)
            PLI["loop"].call_soon_threadsafe(lambda: asyncio.ensure_future(send_pli()))
        return []


def recording_get_decoder(codec):
    if codec.mimeType.lower() == "video/h264":
        return RecordingDecoder()
    return original_get_decoder(codec)


original_get_decoder = receiver_mod.get_decoder
receiver_mod.get_decoder = recording_get_decoder


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


async def http3(h3, method, url, body=None, headers=None):
    """The request over HTTP/3 to UDP port h3[0] of url's host: (status, headers, body)."""
    rest = url.split("://", 1)[1]
    host = rest.split("/", 1)[0].rsplit(":", 1)[0]
    path = "/" + rest.split("/", 1)[1]
    r = await h3get.one_request(
        host, int(h3[0]), h3[1], method, path, headers or {},
        body.decode() if body is not None else None,
    )
    if "error" in r:
        return 0, {}, r["error"]
    return r["status"], {k.lower(): v for k, v in r["headers"]}, bytes.fromhex(r["body"]).decode()


async def main():
    url = sys.argv[1]
    seconds = float(sys.argv[2])
    token = None
    delete = True
    h3 = None
    args = sys.argv[3:]
    while args:
        a = args.pop(0)
        if a == "--token":
            token = args.pop(0)
        elif a == "--no-delete":
            delete = False
        elif a == "--pli-after":
            PLI["after"] = int(args.pop(0))
        elif a == "--h3":
            h3 = (args.pop(0), args.pop(0))
    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="recvonly")
    PLI["loop"] = asyncio.get_running_loop()
    PLI["receiver"] = video.receiver
    pc.addTransceiver("audio", direction="recvonly")
    connected = asyncio.Event()
    audio = {"frames": 0, "loud": 0, "samples": 0}

    async def listen(track):
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            samples = array.array("h", bytes(frame.planes[0]))
            audio["frames"] += 1
            audio["samples"] += frame.samples
            if samples and max(abs(x) for x in samples) > 300:
                audio["loud"] += 1

    @pc.on("track")
    def on_track(track):
        if track.kind == "audio":
            asyncio.ensure_future(listen(track))

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            connected.set()

    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = "Bearer " + token
    loop = asyncio.get_running_loop()
    offer = pc.localDescription.sdp.encode()
    if h3:
        status, resp_headers, body = await http3(h3, "POST", url, offer, headers)
    else:
        status, resp_headers, body = await loop.run_in_executor(
            None, lambda: http("POST", url, offer, headers)
        )
    out = {"status": status, "body": body if status != 201 else ""}
    if status != 201:
        await pc.close()
        print(json.dumps(out))
        return
    location = resp_headers.get("Location") or resp_headers.get("location")
    out["location"] = location
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    try:
        await asyncio.wait_for(connected.wait(), 20)
        out["connected"] = True
    except asyncio.TimeoutError:
        out["connected"] = False
    await asyncio.sleep(seconds)
    out["units"] = [u.hex() for u in UNITS]
    out["timestamps"] = list(TIMESTAMPS)
    out["pli_at"] = PLI["at"]
    out["audio_frames"] = audio["frames"]
    out["audio_loud"] = audio["loud"]
    out["audio_samples"] = audio["samples"]
    if delete:
        base = url.split("/", 3)
        session_url = base[0] + "//" + base[2] + location
        if h3:
            st, _, _ = await http3(h3, "DELETE", session_url)
        else:
            st, _, _ = await loop.run_in_executor(None, lambda: http("DELETE", session_url))
        out["delete_status"] = st
    await pc.close()
    print(json.dumps(out))


asyncio.run(main())
