#!/usr/bin/env python3
"""Regenerates fuzz/seeds/<target>/ from small captures in ../shared/captures (beside the repository).

edge_pcap gets whole small capture files; edge_packet gets frames prefixed by nothing (each
frame is tried with every link type); edge_sip and edge_rtp get UDP/TCP payloads; edge_recorder
gets the frames of a small capture in its record format ([mode][dt][len:2][frame]); edge_video
gets the first RTP packets of the video captures in its format ([seq step][ts step/1000 | marker]
[len][payload, cut at 255 bytes]).
"""
import os, shutil, struct, sys

CAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "captures")
SMALL = [
    "rtp-pcap/examples/h263-over-rtp.pcap",
    "rtp-pcap/examples/sip-rtp-lpc.pcap",
    "nDPI/tests/cfgs/default/pcap/rtcp_multiple_pkts_in_the_same_datagram.pcap",
    "nDPI/tests/cfgs/default/pcap/gre.pcapng",
    "sngrep/tests/ipip.pcap",
    "heplify/example/pcap/sip_ipv6_udp.pcap",
    "sip-capture/collect/testdata/sip-i.pcap",
    "sip-capture/extract/testdata/sip-frag.pcap",
    "sip-capture/extract/testdata/sip-tcp.pcap",
    "sipp/media/dtmf_2833_1_debian_sip-tester.pcap",
]
LT = {1: 0, 101: 1, 113: 2, 276: 3, 0: 4, 229: 5}  # edge_recorder's LINKTYPES index


def frames(path):
    b = open(path, "rb").read()
    if len(b) < 24 or b[:4] not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return None, []
    lt = struct.unpack("<I", b[20:24])[0]
    off, out = 24, []
    while off + 16 <= len(b):
        sec, usec, incl, orig = struct.unpack("<IIII", b[off:off + 16])
        out.append((sec + usec / 1e6, b[off + 16:off + 16 + incl]))
        off += 16 + incl
    return lt, out


def payload(lt, f):
    """UDP/TCP payload of an Ethernet/SLL/NULL IPv4/IPv6 frame (no VLAN, no tunnels)."""
    ip = {1: 14, 113: 16, 0: 4}.get(lt)
    if ip is None or len(f) < ip + 40:
        return None
    p = f[ip:]
    v = p[0] >> 4
    if v == 4:
        hl, proto, rest = (p[0] & 15) * 4, p[9], None
        rest = p[hl:]
    elif v == 6:
        proto, rest = p[6], p[40:]
    else:
        return None
    if proto == 17:
        return rest[8:]
    if proto == 6 and len(rest) >= 20:
        return rest[(rest[12] >> 4) * 4:]
    return None


VIDEO = ["str0m/tests/data/vp8.pcap", "sipp-scenarios/h264.pcap",
         "membrane_rtp_vp8_plugin/test/fixtures/input_vp8.pcap"]


def video_seeds(here):
    d = os.path.join(here, "edge_video")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for rel in VIDEO:
        lt, fr = frames(os.path.join(CAP, rel))
        out, last_ts = bytearray(), None
        for _, f in fr[:40]:
            pl = payload(lt, f)
            if not pl or len(pl) < 12:
                continue
            ts = struct.unpack(">I", pl[4:8])[0]
            step = 0 if last_ts is None else min(127, ((ts - last_ts) & 0xFFFFFFFF) // 1000)
            last_ts = ts
            body = pl[12:][:255]
            out += bytes([1, step | (pl[1] & 0x80), len(body)]) + body
        open(os.path.join(d, os.path.basename(rel)), "wb").write(bytes(out))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for t in ["edge_pcap", "edge_packet", "edge_sip", "edge_rtp", "edge_recorder"]:
        shutil.rmtree(os.path.join(here, t), ignore_errors=True)
        os.makedirs(os.path.join(here, t))
    n = 0
    for rel in SMALL:
        src = os.path.join(CAP, rel)
        base = os.path.basename(rel)
        shutil.copy(src, os.path.join(here, "edge_pcap", base))
        lt, fr = frames(src)
        if lt is None:
            continue
        rec = bytearray()
        last = fr[0][0] if fr else 0
        for i, (ts, f) in enumerate(fr[:60]):
            if i < 12:
                open(os.path.join(here, "edge_packet", f"{base}.{i}"), "wb").write(f)
            pl = payload(lt, f)
            if pl:
                kind = "edge_sip" if b"SIP/2.0" in pl[:200] else "edge_rtp"
                if kind == "edge_rtp" and len(pl) >= 12:
                    pl = b"\x01" + pl  # edge_rtp: first byte picks the clock
                n += 1
                if len(os.listdir(os.path.join(here, kind))) < 40:
                    open(os.path.join(here, kind, f"{base}.{i}"), "wb").write(pl)
            if lt in LT:
                dt = max(0, min(255, int((ts - last) * 100)))
                last = ts
                rec += bytes([LT[lt] << 2, dt]) + struct.pack(">H", len(f)) + f
        if rec:
            open(os.path.join(here, "edge_recorder", base), "wb").write(bytes(rec))
    video_seeds(here)
    for t in ["edge_sip"]:
        for f in os.listdir(os.path.join(here, "..", "..", "edge", "tests", "data")):
            shutil.copy(os.path.join(here, "..", "..", "edge", "tests", "data", f), os.path.join(here, t, f))


if __name__ == "__main__":
    main()
