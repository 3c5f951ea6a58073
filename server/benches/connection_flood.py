#!/usr/bin/env python3
"""Descriptor figures of docs/security.md ("Limits"): floods of idle connections against a
running `usher serve` on loopback, from several 127.0.0.x addresses, and what the server holds.

    usher serve --config flood.conf &      # http, rtmp, rtsp and mysql on 127.0.0.1
    connection_flood.py PID HTTP RTMP RTSP MYSQL

For each listener: five addresses open ATTEMPTS idle connections each (the old per-address cap:
256, or 64 on MySQL); then the descriptors of PID are counted and a newcomer from 127.0.0.9
tries to be served. Last, a wide HTTP flood: 40 addresses x 270 (the peak counts, as HTTP's
10 s header deadline cuts the first sockets before the last are open). One line per flood;
`five` or `wide` after the addresses runs only those.
"""

import os
import socket
import sys
import time


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(local, addr):
    s = socket.socket()
    s.bind((local, 0))
    s.settimeout(5)
    s.connect(addr)
    return s


def kept(sockets):
    """How many of `sockets` the server still holds open (not closed within 1.5 s)."""
    time.sleep(1.5)
    n = 0
    for s in sockets:
        s.setblocking(False)
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    break
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def served(proto, addr):
    try:
        s = connect("127.0.0.9", addr)
        if proto == "http":
            s.sendall(b"GET /s1/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
            ok = s.recv(12).startswith(b"HTTP/1.1 200")
        elif proto == "rtmp":
            s.sendall(b"\x03" + bytes(1536))
            ok = s.recv(1) == b"\x03"
        elif proto == "rtsp":
            s.sendall(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
            ok = s.recv(12).startswith(b"RTSP/1.0 200")
        else:
            head = s.recv(5)
            ok = len(head) == 5 and head[4] == 10
        s.close()
        return ok
    except OSError:
        return False


def flood(pid, proto, addr, addresses, attempts):
    base = fds(pid)
    peak = base
    sockets = []
    for n in addresses:
        for _ in range(attempts):
            try:
                sockets.append(connect(f"127.0.0.{n}", addr))
            except OSError:
                break
            if len(sockets) % 100 == 0:
                peak = max(peak, fds(pid))
    held = kept(sockets)
    during = fds(pid)
    peak = max(peak, during)
    newcomer = served(proto, addr)
    for s in sockets:
        s.close()
    print(
        f"{proto}: {len(addresses)} addresses x {attempts}: {len(sockets)} connected, "
        f"{held} kept; server descriptors {base} -> {during} (+{during - base}, peak +{peak - base}); "
        f"newcomer from 127.0.0.9 served: {newcomer}",
        flush=True,
    )
    time.sleep(1)


def main():
    pid = int(sys.argv[1])
    addrs = {}
    for proto, text in zip(["http", "rtmp", "rtsp", "mysql"], sys.argv[2:6]):
        host, port = text.rsplit(":", 1)
        addrs[proto] = (host, int(port))
    five = [2, 3, 4, 5, 6]
    only = sys.argv[6:]
    if not only or "five" in only:
        flood(pid, "mysql", addrs["mysql"], five, 64)
        flood(pid, "rtmp", addrs["rtmp"], five, 256)
        flood(pid, "rtsp", addrs["rtsp"], five, 256)
        flood(pid, "http", addrs["http"], five, 300)
    if not only or "wide" in only:
        flood(pid, "http", addrs["http"], list(range(10, 50)), 270)


if __name__ == "__main__":
    main()
