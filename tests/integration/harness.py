"""Shared fixtures for weir's process-level integration tests.

Standard library only (Debian's /usr/bin/python3). Owns: starting weir and weir-backend as
child processes on port 0 (and killing them in cleanups, even when a test fails), rendering
TOML configs, a raw HTTP/1.1 client that exposes exactly what went over the wire, payloads
that can be generated and verified incrementally, a small load generator and curl.
Every wait here has a deadline; every loop is bounded by one.
"""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEIR_BIN = os.environ.get("WEIR_BIN", os.path.join(REPO, "build", "weir"))
BACKEND_BIN = os.environ.get("WEIR_BACKEND_BIN", os.path.join(REPO, "build", "weir-backend"))
WEIRCTL_BIN = os.environ.get("WEIRCTL_BIN", os.path.join(REPO, "build", "weirctl"))

START_TIMEOUT = 10.0  # seconds for a process to print its listening line
IO_TIMEOUT = 10.0     # default socket timeout
MIB = 1 << 20


def wait_until(predicate, timeout, interval=0.02):
    """Polls predicate() until it is truthy or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def dead_port():
    """A 127.0.0.1 port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(*args, timeout=60):
    """Runs curl -sS with args; returns the CompletedProcess (stdout as bytes)."""
    return subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# Child processes


class Proc:
    """A child process whose stdout and stderr lines are collected by daemon threads, so a
    pipe never fills and a test can wait for a line with a deadline."""

    def __init__(self, argv, cleanups):
        if not os.access(argv[0], os.X_OK):
            raise AssertionError(f"binary not found or not executable: {argv[0]} "
                                 "(set WEIR_BIN / WEIR_BACKEND_BIN)")
        self.argv = argv
        self.lines = []  # (stream, line) in arrival order, as normalize() made them
        self.raw_lines = []  # (stream, line) exactly as written
        self._cond = threading.Condition()
        self._open_streams = 2
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, start_new_session=True)
        cleanups(self.kill)
        for name, stream in (("stdout", self.popen.stdout), ("stderr", self.popen.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    @property
    def pid(self):
        return self.popen.pid

    def _pump(self, name, stream):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self.raw_lines.append((name, line))
                    self.lines.append((name, self.normalize(name, line)))
                    self._cond.notify_all()
        finally:
            stream.close()
            with self._cond:
                self._open_streams -= 1
                self._cond.notify_all()

    def normalize(self, stream, line):
        """The line tests match against; subclasses strip log decoration."""
        return line

    def output(self, stream=None):
        with self._cond:
            return [line for s, line in self.lines if stream in (None, s)]

    def wait_line(self, pattern, timeout=START_TIMEOUT, stream=None, start=0):
        """Waits for an output line matching regex pattern; returns (index, match).
        Raises AssertionError with the output so far on timeout or exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    s, line = self.lines[i]
                    m = regex.search(line) if stream in (None, s) else None
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self._open_streams == 0:
                    break
                self._cond.wait(min(left, 0.1))
        raise AssertionError(f"{os.path.basename(self.argv[0])}: no line matching {pattern!r} "
                             f"within {timeout}s (exit={self.popen.poll()}); output:\n"
                             + self.tail())

    def tail(self, n=30):
        return "\n".join(f"  [{s}] {line}" for s, line in self.lines[-n:])

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait_exit(self, timeout):
        """Exit code, or None if still running after timeout."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.alive():
            self.popen.kill()
        self.wait_exit(5)
        self.assert_no_sanitizer_report()

    def assert_no_sanitizer_report(self):
        """Fails the test when a sanitizer build of a binary reported a memory or UB error."""
        markers = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
        found = [line for line in self.output() if any(m in line for m in markers)]
        if found:
            raise AssertionError(f"{os.path.basename(self.argv[0])} sanitizer report:\n"
                                 + self.tail(60))

    def proc_status(self, field):
        """An integer field from /proc/PID/status in KiB (e.g. VmHWM), or None once exited."""
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None


class Backend(Proc):
    """A weir-backend process. stats() reads /__stats over one persistent connection so that
    reading the stats does not itself add to the connection count."""

    def __init__(self, cleanups, name="backend", **options):
        argv = [BACKEND_BIN, "--name", name, "--host", "127.0.0.1", "--port", "0"]
        for key, value in options.items():
            argv += ["--" + key.replace("_", "-"), str(value)]
        super().__init__(argv, cleanups)
        self.name = name
        _, m = self.wait_line(r"^backend (\S+) listening on ([\d.]+):(\d+)$", stream="stdout")
        self.host, self.port = m.group(2), int(m.group(3))
        self.addr = f"{self.host}:{self.port}"
        self._stats_client = None
        cleanups(self._close_stats)

    def _close_stats(self):
        if self._stats_client:
            self._stats_client.close()

    def stats(self):
        for attempt in (1, 2):
            try:
                if self._stats_client is None:
                    self._stats_client = Client((self.host, self.port))
                resp = self._stats_client.request("GET", "/__stats")
                if resp.status != 200:
                    raise AssertionError(f"/__stats answered {resp.status}")
                return resp.json()
            except OSError:
                self._close_stats()
                self._stats_client = None
                if attempt == 2:
                    raise

    def requests(self):
        return self.stats()["requests"]


class Weir(Proc):
    """A weir process. listeners maps listener name → (host, port) as announced on stderr."""

    LISTENER_RE = r"^weir: listener (\S+) listening on ([\d.]+):(\d+)$"
    ADMIN_RE = r"^weir: admin listening on ([\d.]+):(\d+)$"

    # The error log's text prefix: time stamp, level, thread (proxy/log.h).
    LOG_PREFIX_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?:debug|info|warn|error) "
                               r"(?:main|worker=\d+) (?=weir: )")

    def normalize(self, stream, line):
        """stderr lines read as "weir: message" whatever the log format: the text prefix is
        cut and a JSON line's msg is taken (raw_lines keeps them as written)."""
        if stream != "stderr":
            return line
        if line.startswith('{"time":'):
            try:
                return "weir: " + json.loads(line)["msg"]
            except (ValueError, KeyError, TypeError):
                return line
        return self.LOG_PREFIX_RE.sub("", line, count=1)

    def __init__(self, cleanups, args):
        super().__init__([WEIR_BIN, *args], cleanups)
        idx, _ = self.wait_line(r"^weir: ready\b", stream="stderr")
        self.listeners = {}
        self.admin = None  # (host, port) when [admin] is configured
        for line in self.output("stderr")[:idx]:
            m = re.match(self.LISTENER_RE, line)
            if m:
                self.listeners[m.group(1)] = (m.group(2), int(m.group(3)))
            m = re.match(self.ADMIN_RE, line)
            if m:
                self.admin = (m.group(1), int(m.group(2)))
        if not self.listeners:
            raise AssertionError("weir announced no listener:\n" + self.tail())

    @property
    def addr(self):
        """(host, port) of listener "public", or of the only listener."""
        if "public" in self.listeners:
            return self.listeners["public"]
        return next(iter(self.listeners.values()))

    def reload(self, config_text, timeout=START_TIMEOUT):
        """Rewrites the config file, sends SIGHUP and waits until weir reports the reload."""
        start = len(self.lines)
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.signal(signal.SIGHUP)
        _, m = self.wait_line(r"^weir: reload(ed|\b)", timeout=timeout, stream="stderr",
                              start=start)
        if m.group(1) != "ed":
            raise AssertionError("reload failed:\n" + self.tail())

    def peak_rss_mib(self):
        kib = self.proc_status("VmHWM")
        return None if kib is None else kib / 1024.0


def start_weir(cleanups, config_text, extra_args=(), path=None):
    """weir --config on config_text written to path (default: a new temporary file)."""
    if path is None:
        tmp = tempfile.mkdtemp(prefix="weir-it-")
        cleanups(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "weir.toml")
    with open(path, "w") as f:
        f.write(config_text)
    weir = Weir(cleanups, ["--config", path, *extra_args])
    weir.config_path = path
    return weir


def make_cert(directory, name, *dns_names, ca=None, ips=()):
    """An EC certificate for dns_names and ips (CN = name) made with the openssl CLI:
    self-signed, or signed by ca = (ca_cert, ca_key) from make_ca; returns (cert_path,
    key_path)."""
    cert, key = (os.path.join(directory, f"{name}.{ext}") for ext in ("crt", "key"))
    san = ",".join([f"DNS:{n}" for n in dns_names] + [f"IP:{ip}" for ip in ips]) or f"DNS:{name}"
    run = dict(check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    req = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-subj", f"/CN={name}", "-addext", f"subjectAltName={san}", "-keyout", key]
    if ca is None:
        subprocess.run(req + ["-x509", "-days", "2", "-out", cert], **run)
        return cert, key
    csr = cert + ".csr"
    subprocess.run(req + ["-out", csr], **run)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                    "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", cert],
                   **run)
    return cert, key


def make_ca(directory, name):
    """A self-signed EC CA certificate (CN = name); returns (cert_path, key_path) for
    make_cert(..., ca=...)."""
    cert, key = (os.path.join(directory, f"{name}.{ext}") for ext in ("crt", "key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return cert, key


def tls_subject(addr, server_name=None, extra=()):
    """The subject CN that weir presents for server_name (openssl s_client), or None when the
    handshake fails."""
    argv = ["openssl", "s_client", "-connect", f"{addr[0]}:{addr[1]}", *extra]
    if server_name:
        argv += ["-servername", server_name]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=15, input="")
    m = re.search(r"^subject=.*CN\s*=\s*([^,\n]+)", run.stdout, re.M)
    return m.group(1).strip() if m else None


# ---------------------------------------------------------------------------------------------
# Admin API

ADMIN_TOKENS = {"ci": ("write", "ci-secret-token"), "viewer": ("read", "viewer-secret-token")}


def tokens_toml(tokens=None):
    """A tokens file for name → (scope, token): only the tokens' SHA-256 is written."""
    out = []
    for name, (scope, token) in (tokens or ADMIN_TOKENS).items():
        digest = hashlib.sha256(token.encode()).hexdigest()
        out += ["[[token]]", f"name = {_toml_value(name)}", f"scope = {_toml_value(scope)}",
                f"sha256 = {_toml_value(digest)}", ""]
    return "\n".join(out)


def admin_settings(tmp, **overrides):
    """[admin] settings on port 0 with ADMIN_TOKENS written to tmp/tokens.toml and state in
    tmp/state."""
    with open(os.path.join(tmp, "tokens.toml"), "w") as f:
        f.write(tokens_toml())
    return {"address": "127.0.0.1:0", "tokens_file": os.path.join(tmp, "tokens.toml"),
            "state_dir": os.path.join(tmp, "state"), **overrides}


def admin_call(weir_or_addr, method, path, token="ci", body=None, headers=()):
    """One admin API request on a fresh connection; token is a name from ADMIN_TOKENS, a raw
    token string, or None. body: bytes, str, or an object sent as JSON."""
    addr = weir_or_addr.admin if isinstance(weir_or_addr, Weir) else weir_or_addr
    hdrs = list(headers)
    if token is not None:
        raw = ADMIN_TOKENS[token][1] if token in ADMIN_TOKENS else token
        hdrs.append(("Authorization", f"Bearer {raw}"))
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    if body is not None:
        hdrs.append(("Content-Type", "application/json"))
        hdrs.append(("Content-Length", str(len(body))))
    with Client(addr) as c:
        return c.request(method, path, hdrs, body or b"", host="admin")


def weirctl(weir, *args, token="ci", timeout=30, scheme="http", env=None):
    """Runs weirctl against weir's admin listener (scheme "https" for [admin.tls]) with token
    (a name from ADMIN_TOKENS) in WEIR_TOKEN; env: further environment variables. Returns the
    CompletedProcess (text)."""
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("WEIR_TOKEN", "WEIR_ADMIN", "WEIR_CACERT", "WEIR_CERT", "WEIR_KEY")},
           **(env or {})}
    if token is not None:
        env["WEIR_TOKEN"] = ADMIN_TOKENS[token][1]
    host, port = weir.admin
    return subprocess.run([WEIRCTL_BIN, "--admin", f"{scheme}://{host}:{port}", *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------------
# Config rendering


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic strings
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot render {v!r} as TOML")


def _endpoint(e):
    return e.addr if isinstance(e, Backend) else e


def version(name, weight, *endpoints, **options):
    """A [[service.version]]; options are further keys (dicts become inline tables)."""
    return {"name": name, "weight": weight, "endpoints": [_endpoint(e) for e in endpoints],
            **options}


def service(name, *versions, stable=None, **options):
    """A [[service]]; options are further keys: scalars such as balance="least_request", and
    dicts such as guard={"window_s": 2} or sticky={"header": "x-user"}, each rendered as a
    sub-table ([service.guard])."""
    return {"name": name, "stable": stable or versions[0]["name"], "versions": list(versions),
            **options}


def route(service_name, host="*", path_prefix="/", listener="public"):
    return {"listener": listener, "host": host, "path_prefix": path_prefix,
            "service": service_name}


def single_service_config(*endpoints, proxy=None):
    """One service "svc" with one version "v1" (weight 100) over endpoints, routed from "*"."""
    return render_config([service("svc", version("v1", 100, *endpoints))], proxy=proxy)


def render_config(services, routes=None, proxy=None, listeners=("public",), admin=None,
                  log=None, fleet=None):
    """TOML text for weir. proxy: overrides for [proxy] (workers defaults to 2). admin: the
    [admin] table (see admin_settings), none when None. log: the [log] table, fleet: the [fleet]
    table, none when None.
    listeners: names, or dicts with name, optional address (default 127.0.0.1:0), protocols,
    tls ([(cert, key)...]) and tls_settings (other [listener.tls] keys).
    routes default to one catch-all route on "public" to the first service."""
    settings = {"workers": 2, **(proxy or {})}
    out = ["[proxy]"] + [f"{k} = {_toml_value(v)}" for k, v in settings.items()]
    if admin is not None:
        out += ["", "[admin]"] + [f"{k} = {_toml_value(v)}" for k, v in admin.items()]
    if log is not None:
        out += ["", "[log]"] + [f"{k} = {_toml_value(v)}" for k, v in log.items()]
    if fleet is not None:
        out += ["", "[fleet]"] + [f"{k} = {_toml_value(v)}" for k, v in fleet.items()]
    for lst in listeners:
        lst = {"name": lst} if isinstance(lst, str) else lst
        out += ["", "[[listener]]", f"name = {_toml_value(lst['name'])}",
                f"address = {_toml_value(lst.get('address', '127.0.0.1:0'))}"]
        if "protocols" in lst:
            out.append(f"protocols = {_toml_value(lst['protocols'])}")
        if "tls" in lst:
            out.append("  [listener.tls]")
            out += [f"  {k} = {_toml_value(v)}" for k, v in lst.get("tls_settings", {}).items()]
            for cert, key in lst["tls"]:
                out += ["  [[listener.tls.certificate]]", f"  cert = {_toml_value(cert)}",
                        f"  key = {_toml_value(key)}"]
    for svc in services:
        # Dict options become sub-tables, after the versions (inline tables in versions).
        tables = {k: v for k, v in svc.items() if isinstance(v, dict)}
        out += ["", "[[service]]"] + [f"{k} = {_toml_value(v)}" for k, v in svc.items()
                                      if k != "versions" and k not in tables]
        for ver in svc["versions"]:
            out += ["  [[service.version]]"] + [f"  {k} = {_toml_value(v)}"
                                                for k, v in ver.items()]
        for table, keys in tables.items():
            out += [f"  [service.{table}]"] + [f"  {k} = {_toml_value(v)}"
                                               for k, v in keys.items()]
    for r in routes if routes is not None else [route(services[0]["name"])]:
        out += ["", "[[route]]"] + [f"{k} = {_toml_value(v)}" for k, v in r.items()]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 client


class Response:
    def __init__(self, version, status, reason, headers):
        self.version, self.status, self.reason, self.headers = version, status, reason, headers
        self.body = b""      # None when streamed to a sink
        self.body_len = 0
        self.trailers = []
        self.chunked = False
        self.interim = []    # 1xx responses seen before this one: (status, headers)

    def header(self, name, default=None):
        """The first value of a header (case-insensitive)."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def trailer(self, name):
        for k, v in self.trailers:
            if k.lower() == name.lower():
                return v
        return None

    def connection_tokens(self):
        return {t.strip().lower() for v in self.header_all("connection") for t in v.split(",")}

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<{self.version} {self.status} {self.reason} headers={self.headers} "
                f"body={self.body[:200] if self.body is not None else None!r}>")


class Closed(ConnectionError):
    """The peer closed the connection where the response framing needed more bytes."""


class Client:
    """One client connection. Requests are written verbatim; responses are parsed strictly
    enough to notice framing errors (a stray body after HEAD/204 breaks the next response)."""

    def __init__(self, addr, timeout=IO_TIMEOUT):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing

    def send(self, data):
        self.sock.sendall(data)

    @staticmethod
    def build(method, target, headers=(), body=b"", host="test.local", version="HTTP/1.1"):
        head = [f"{method} {target} {version}"]
        if host is not None:
            head.append(f"Host: {host}")
        names = {k.lower() for k, _ in headers}
        head += [f"{k}: {v}" for k, v in headers]
        if body and "content-length" not in names and "transfer-encoding" not in names:
            head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body

    def request(self, method, target, headers=(), body=b"", sink=None, **kw):
        self.send(self.build(method, target, headers, body, **kw))
        return self.read_response(method, sink=sink)

    def get(self, target, headers=(), **kw):
        return self.request("GET", target, headers, **kw)

    # -- reading

    def _fill(self, limit=1 << 20):
        data = self.sock.recv(limit)
        if not data:
            raise Closed("connection closed by peer")
        self.buf += data

    def readline(self, limit=256 * 1024):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line.rstrip(b"\r\n")
            if len(self.buf) > limit:
                raise AssertionError("response line too long")
            self._fill()

    def read_some(self, n):
        if not self.buf:
            self._fill(min(n, 1 << 20))
        piece = bytes(self.buf[:n])
        del self.buf[:n]
        return piece

    def _read_fields(self):
        fields = []
        for _ in range(1000):
            line = self.readline().decode("latin-1")
            if not line:
                return fields
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
        raise AssertionError("more than 1000 header fields in a response")

    def read_head(self):
        line = self.readline().decode("latin-1")
        m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", line)
        if not m:
            raise AssertionError(f"bad status line {line!r}")
        return Response(m.group(1), int(m.group(2)), m.group(3) or "", self._read_fields())

    def read_response(self, method="GET", sink=None):
        """Reads one final response (collecting 1xx interims). sink(bytes) receives the body
        piece by piece instead of it being kept in resp.body."""
        interim = []
        for _ in range(10):
            resp = self.read_head()
            if resp.status >= 200 or resp.status == 101:
                break
            interim.append((resp.status, resp.headers))
        resp.interim = interim
        pieces = []
        emit = sink or pieces.append

        def take(n):
            while n > 0:
                piece = self.read_some(min(n, 1 << 20))
                resp.body_len += len(piece)
                emit(piece)
                n -= len(piece)

        te = ",".join(resp.header_all("transfer-encoding")).lower()
        if method == "HEAD" or resp.status in (204, 304) or resp.status < 200:
            pass
        elif "chunked" in te:
            resp.chunked = True
            for _ in range(1 << 30):
                size_line = self.readline().split(b";")[0].strip()
                size = int(size_line, 16)
                if size == 0:
                    resp.trailers = self._read_fields()
                    break
                take(size)
                if self.readline() != b"":
                    raise AssertionError("chunk data not followed by CRLF")
        elif resp.header("content-length") is not None:
            take(int(resp.header("content-length")))
        else:  # delimited by close
            try:
                for _ in range(1 << 30):
                    take(len(self.buf) or 1)
            except Closed:
                pass
        resp.body = None if sink else b"".join(pieces)
        return resp

    def closed_within(self, timeout):
        """True if the peer closes (EOF or reset) within timeout with no further bytes."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        self.buf += data
        return not data


def get(addr, target, headers=(), **kw):
    """One request on a fresh connection."""
    with Client(addr) as c:
        return c.get(target, headers, **kw)


def refused(addr, timeout=1.0):
    """True if connecting to addr is refused (or times out) rather than accepted."""
    try:
        with socket.create_connection(addr, timeout=timeout):
            return False
    except (ConnectionRefusedError, socket.timeout):
        return True


# ---------------------------------------------------------------------------------------------
# Payloads: generated and verified incrementally, never held whole in memory


class AlphabetPayload:
    """size bytes where byte i is 'a' + i % 26: what weir-backend's /bytes and /chunked send."""

    def __init__(self, size):
        self.size = size
        self._pattern = b"abcdefghijklmnopqrstuvwxyz" * (MIB // 26 + 2)

    def expected(self, offset, n):
        n = max(0, min(n, self.size - offset, MIB))
        return self._pattern[offset % 26: offset % 26 + n]

    def chunks(self, block=MIB):
        for off in range(0, self.size, block):
            yield self.expected(off, block)


class BlockPayload:
    """size bytes of seeded random data in 1 MiB blocks, each stamped with its index, so a
    lost, duplicated or reordered block is caught."""

    def __init__(self, size, seed=7):
        self.size = size
        self._base = random.Random(seed).randbytes(MIB)

    def block(self, k):
        return (k.to_bytes(8, "big") + self._base[8:])[:max(0, self.size - k * MIB)]

    def expected(self, offset, n):
        out = bytearray()
        while n > 0 and offset < self.size:
            k, inner = divmod(offset, MIB)
            piece = self.block(k)[inner:inner + n]
            out += piece
            offset += len(piece)
            n -= len(piece)
        return bytes(out)

    def chunks(self, block=MIB):
        for k in range((self.size + MIB - 1) // MIB):
            yield self.block(k)


class StreamCheck:
    """A body sink comparing each piece against payload at the running offset."""

    def __init__(self, payload):
        self.payload = payload
        self.offset = 0
        self.mismatch_at = None

    def __call__(self, data):
        view = memoryview(data)
        for pos in range(0, len(view), MIB):
            part = view[pos:pos + MIB]
            if self.mismatch_at is None and part != self.payload.expected(self.offset, len(part)):
                self.mismatch_at = self.offset
            self.offset += len(part)

    def assert_complete(self, tc):
        tc.assertIsNone(self.mismatch_at, f"body differs from expected at byte {self.mismatch_at}")
        tc.assertEqual(self.offset, self.payload.size, "body length")


def send_body(client, payload, chunked, piece=65536):
    """Writes payload as the request body: raw bytes, or chunks of irregular sizes."""
    sizes = (piece, 1, 4093, piece * 3)
    for block in payload.chunks():
        if not chunked:
            client.send(block)
            continue
        pos, i = 0, 0
        while pos < len(block):
            part = block[pos:pos + sizes[i % len(sizes)]]
            client.send(b"%x\r\n" % len(part) + part + b"\r\n")
            pos, i = pos + len(part), i + 1
    if chunked:
        client.send(b"0\r\n\r\n")


def upload_head(target, payload, chunked, extra=()):
    framing = [("Transfer-Encoding", "chunked")] if chunked else \
        [("Content-Length", str(payload.size))]
    return Client.build("POST", target, list(extra) + framing)


FNV_OFFSET, FNV_PRIME = 0xcbf29ce484222325, 0x100000001b3


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


# ---------------------------------------------------------------------------------------------
# Load


class LoadResult:
    def __init__(self):
        self.backends = Counter()  # x-backend value → count
        self.statuses = Counter()
        self.errors = []           # (time, repr) of connection-level failures
        self.lock = threading.Lock()

    @property
    def total(self):
        return sum(self.statuses.values()) + len(self.errors)

    def failures(self):
        bad = {s: n for s, n in self.statuses.items() if not 200 <= s < 300}
        return bad, self.errors[:10]


class BackgroundClient:
    """A client loop in a daemon thread for the length of a `with` block: subclasses define
    _run(), which must return soon after self._stop is set."""

    def __init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    def _run(self):
        raise NotImplementedError


def load(addr, threads=4, requests=None, duration=None, target="/", host="test.local",
         max_time=60.0):
    """Keep-alive load from `threads` connections until `requests` are done or `duration`
    seconds pass (bounded by max_time either way). A failed connection counts one error and
    is replaced."""
    result = LoadResult()
    deadline = time.monotonic() + min(duration or max_time, max_time)
    quota = [requests // threads + (i < requests % threads) for i in range(threads)] \
        if requests is not None else [None] * threads

    def worker(n):
        client = None
        done = 0
        while (n is None or done < n) and time.monotonic() < deadline:
            done += 1
            try:
                if client is None:
                    client = Client(addr, timeout=5)
                resp = client.get(target, host=host)
                with result.lock:
                    result.statuses[resp.status] += 1
                    result.backends[resp.header("x-backend")] += 1
                if "close" in resp.connection_tokens():
                    client.close()
                    client = None
            except (OSError, AssertionError) as e:
                with result.lock:
                    result.errors.append((time.monotonic(), repr(e)))
                if client:
                    client.close()
                client = None
                time.sleep(0.005)
        if client:
            client.close()

    pool = [threading.Thread(target=worker, args=(q,), daemon=True) for q in quota]
    for t in pool:
        t.start()
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()) + 10)
    return result


# ---------------------------------------------------------------------------------------------
# Test case base


class WeirTestCase(unittest.TestCase):
    """Starts processes that die with the test. Class-level fixtures (shared by the tests of
    one class) use the same helpers with cls.addClassCleanup."""

    maxDiff = 4000

    def tmpdir(self):
        if not getattr(self, "_tmp", None):
            self._tmp = tempfile.mkdtemp(prefix="weir-it-")
            self.addCleanup(shutil.rmtree, self._tmp, True)
        return self._tmp

    def write(self, name, text):
        path = os.path.join(self.tmpdir(), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def backend(self, name="backend", **options):
        return Backend(self.addCleanup, name, **options)

    def weir(self, config_text, extra_args=()):
        return start_weir(self.addCleanup, config_text, extra_args)

    def proxy(self, *backends, proxy=None):
        """weir with one service "svc" of one version "v1" (weight 100) over backends."""
        return self.weir(single_service_config(*backends, proxy=proxy))

    def client(self, weir_or_addr, **kw):
        addr = weir_or_addr.addr if isinstance(weir_or_addr, Weir) else weir_or_addr
        c = Client(addr, **kw)
        self.addCleanup(c.close)
        return c

    def assertWeirAlive(self, weir):
        self.assertTrue(weir.alive(), f"weir exited with {weir.popen.poll()}:\n{weir.tail()}")

    def response_within(self, client, timeout, what):
        """client's next response, or a test failure saying what got no (or a reset) answer."""
        client.sock.settimeout(timeout)
        try:
            return client.read_response()
        except socket.timeout:
            self.fail(f"no response within {timeout}s to {what}")
        except (ConnectionResetError, Closed) as e:
            self.fail(f"{e!r} before any response to {what}")
        finally:
            client.sock.settimeout(IO_TIMEOUT)

    def assertClosesConnection(self, client, resp, timeout=2.0):
        self.assertIn("close", resp.connection_tokens(),
                      f"response lacks Connection: close: {resp!r}")
        self.assertTrue(client.closed_within(timeout), "connection stayed open")

    def assertLoadClean(self, result, min_total=1):
        bad, errors = result.failures()
        self.assertEqual((bad, errors), ({}, []),
                         f"failed requests out of {result.total}")
        self.assertGreaterEqual(result.total, min_total)

    def assertShare(self, counts, name, expected, tolerance):
        total = sum(counts.values())
        share = counts[name] / total if total else 0.0
        self.assertLessEqual(abs(share - expected), tolerance,
                             f"{name} got {share:.3%} of {total} (want {expected:.0%} ± "
                             f"{tolerance:.0%}); counts {dict(counts)}")


class SharedProxyTestCase(WeirTestCase):
    """One backend ("origin") behind one weir ("edge"), shared by every test of the class;
    proxy_settings overrides [proxy]."""

    proxy_settings = None

    @classmethod
    def setUpClass(cls):
        cls.origin = Backend(cls.addClassCleanup, "origin")
        cls.edge = start_weir(cls.addClassCleanup,
                              single_service_config(cls.origin, proxy=cls.proxy_settings))


def add_cases(cls, cases, check):
    """Adds one test_<name> method per cases entry, calling cls.<check>(*args)."""
    for name, args in cases.items():
        setattr(cls, "test_" + name, lambda self, a=args: getattr(self, check)(*a))
