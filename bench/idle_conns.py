#!/usr/bin/python3
"""Opens COUNT keep-alive HTTP/1.1 connections to HOST:PORT, sends one GET on each and reads
its answer, then holds them all idle until STOP_FILE exists (or --hold seconds pass), and
closes them. Prints "ready N" once every connection has had its answer; a connection the
proxy refuses or closes is an error (exit 1), so the proxy's memory is measured with all N
held. Used by bench/run.sh (idle-10k). Standard library only.

usage: idle_conns.py HOST PORT COUNT STOP_FILE [--hold SECONDS] [--timeout SECONDS]
"""

import argparse
import os
import selectors
import socket
import sys
import time

IN_FLIGHT = 256  # connects in progress at once: a burst of 10k SYNs overflows accept queues


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("stop_file")
    ap.add_argument("--hold", type=float, default=120.0, help="longest hold, seconds")
    ap.add_argument("--timeout", type=float, default=60.0, help="to open them all, seconds")
    args = ap.parse_args()

    request = f"GET / HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    held = []        # sockets that got their answer
    pending = {}     # socket -> bytes received so far
    started = 0
    deadline = time.monotonic() + args.timeout

    def fail(message):
        print(f"idle_conns: {message} ({len(held)} of {args.count} open)", file=sys.stderr)
        sys.exit(1)

    while len(held) < args.count:
        while started < args.count and len(pending) < IN_FLIGHT:
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect((args.host, args.port))
            except BlockingIOError:
                pass
            except OSError as e:
                fail(f"connect: {e}")
            pending[s] = b""
            sel.register(s, selectors.EVENT_WRITE)
            started += 1
        if time.monotonic() > deadline:
            fail(f"not all connections answered within {args.timeout:.0f} s")
        for key, events in sel.select(timeout=1.0):
            s = key.fileobj
            if events & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(f"connect: {os.strerror(err)}")
                s.send(request)  # a few bytes into an empty send buffer: never partial
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except OSError as e:
                fail(f"read: {e}")
            if not data:
                fail("the proxy closed a connection before answering")
            buf = pending[s] + data
            pending[s] = buf
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                continue
            length = 0
            for line in buf[:head_end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if not buf.startswith(b"HTTP/1.1 2"):
                status_line = buf.split(b"\r\n", 1)[0]
                fail(f"unexpected answer {status_line!r}")
            if len(buf) >= head_end + 4 + length:
                sel.unregister(s)
                del pending[s]
                held.append(s)

    print(f"ready {len(held)}", flush=True)
    until = time.monotonic() + args.hold
    while not os.path.exists(args.stop_file) and time.monotonic() < until:
        time.sleep(0.05)
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
