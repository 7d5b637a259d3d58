"""Headless Chromium driven over the Chrome DevTools Protocol, standard library only.

Owns: starting Chromium (headless, its own profile directory, port 0 for DevTools) and stopping
its whole process group in a cleanup; a minimal RFC 6455 WebSocket client (text frames, masked
as a client must, fragmentation, ping/pong); CDP calls over one flattened page session, and
page helpers (navigate, evaluate, wait for a condition, real mouse clicks, typing, screenshots).
Every wait has a deadline.
"""

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
import urllib.parse

from harness import Proc

CHROMIUM = os.environ.get("WEIR_CHROMIUM", "/usr/bin/chromium")
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    """A client WebSocket carrying text messages."""

    def __init__(self, url, timeout=30.0):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = bytearray()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        if " 101 " not in lines[0] + " " or headers.get("sec-websocket-accept") != accept:
            raise ConnectionError(f"WebSocket upgrade refused: {head[:300]!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no WebSocket data before the deadline")
        self.sock.settimeout(left)
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("WebSocket closed by the peer")
        self.buf += data

    def _take(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _send_frame(self, opcode, payload):
        n = len(payload)
        head = bytearray([0x80 | opcode])
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        key = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
        self.sock.sendall(bytes(head) + mask + masked)

    def send(self, text):
        self._send_frame(0x1, text.encode())

    def recv(self, deadline):
        """The next whole text message (str)."""
        message = bytearray()
        while True:
            b0, b1 = self._take(2, deadline)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._take(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._take(8, deadline))[0]
            mask = self._take(4, deadline) if b1 & 0x80 else None
            payload = self._take(n, deadline)
            if mask:
                key = (mask * (n // 4 + 1))[:n]
                payload = (int.from_bytes(payload, "big") ^
                           int.from_bytes(key, "big")).to_bytes(n, "big")
            if opcode == 0x9:  # ping
                self._send_frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("WebSocket closed by the peer")
            if opcode in (0x0, 0x1):
                message += payload
                if b0 & 0x80:
                    return message.decode()


class CDPError(AssertionError):
    pass


class Chromium:
    """One headless Chromium with one page (tab) attached over a flattened CDP session.
    events holds every CDP event received, in order: (method, params)."""

    def __init__(self, cleanups, width=1280, height=900, timeout=60.0):
        self.profile = tempfile.mkdtemp(prefix="weir-chromium-")
        cleanups(shutil.rmtree, self.profile, True)
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--mute-audio", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        self.proc = _BrowserProc(argv, cleanups)
        _, m = self.proc.wait_line(r"DevTools listening on (ws://\S+)", timeout=timeout,
                                   stream="stderr")
        self.ws = WebSocket(m.group(1), timeout=timeout)
        cleanups(self.close)
        self.events = []
        self._next_id = 0
        target = self.call("Target.createTarget", {"url": "about:blank"},
                           session=None)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.resize(width, height)

    def close(self):
        try:
            self.call("Browser.close", session=None, timeout=5)
        except (OSError, CDPError, TimeoutError, ConnectionError):
            pass
        self.ws.close()
        self.proc.stop()

    # -- protocol

    def _dispatch(self, deadline):
        msg = json.loads(self.ws.recv(deadline))
        if "method" in msg:
            self.events.append((msg["method"], msg.get("params", {})))
        return msg

    def call(self, method, params=None, session="page", timeout=30.0):
        """Sends one CDP command and returns its result; events that arrive meanwhile are
        kept in self.events."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session == "page":
            msg["sessionId"] = self.session
        elif session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._dispatch(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_event(self, method, timeout=30.0, start=0):
        """Params of the first event named method at index >= start of self.events."""
        deadline = time.monotonic() + timeout
        i = start
        while True:
            for i in range(i, len(self.events)):
                if self.events[i][0] == method:
                    return self.events[i][1]
            i = len(self.events)
            self._dispatch(deadline)

    # -- page

    def resize(self, width, height):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def navigate(self, url, timeout=30.0):
        start = len(self.events)
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired", timeout, start)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (promises are awaited)."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise CDPError(f"{expression!r} threw: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression, timeout=15.0, what=None):
        """Polls expression until it is truthy; returns its value, or fails with its last one."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not value:
            raise AssertionError(f"{what or expression} not true within {timeout}s "
                                 f"(last value {value!r})")
        return value

    def click(self, selector):
        """A real left click (mouse events at the element's centre, as a user would)."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()")
        if box is None:
            raise AssertionError(f"no element matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                   "button": "left", "clickCount": 1})

    def type_text(self, text):
        """Types text into the focused element."""
        self.call("Input.insertText", {"text": text})

    def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                 "windowsVirtualKeyCode": 13, "text": "\r"})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                    "fromSurface": True})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def errors(self):
        """Script exceptions and console/log errors other than failed fetches (a refused API
        call is logged by Chromium as a network error, and the page handles it)."""
        out = []
        for method, params in self.events:
            if method == "Runtime.exceptionThrown":
                out.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Log.entryAdded":
                entry = params["entry"]
                if entry["level"] == "error" and entry.get("source") != "network":
                    out.append(f"{entry.get('source')}: {entry['text']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                out.append("console.error: " + repr(params["args"])[:300])
        return out


class _BrowserProc(Proc):
    """Chromium's own process, leader of its own process group (start_new_session): stop()
    ends the group, so no renderer or helper process outlives the test."""

    def stop(self):
        if self.alive():
            self.wait_exit(5)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait_exit(5)

    def assert_no_sanitizer_report(self):
        pass  # not a weir binary
