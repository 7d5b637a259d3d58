"""A real etcd cluster for the fleet tests: N members of Debian's /usr/bin/etcd (3.4) on
127.0.0.1, client and peer ports picked free, data dirs in one temporary folder. Members can be
killed (-9), stopped (SIGTERM) and restarted on their data dir; the cluster is read and written
through etcd's JSON gateway (POST /v3/..., keys and values base64) so that a test can check what
weir wrote without trusting weir. close() (also from `with`, and at interpreter exit) stops every
member and removes the data. Every call has a timeout; every wait has a deadline.
Standard library only.
"""

import atexit
import base64
import json
import os
import shutil
import signal
import tempfile
import urllib.error
import urllib.request
import uuid
from collections import namedtuple

import harness as h

ETCD_BIN = os.environ.get("WEIR_ETCD_BIN", "/usr/bin/etcd")

KV = namedtuple("KV", "key value mod_revision create_revision version lease")


class EtcdError(AssertionError):
    """An etcd gateway call that did not succeed: status is the HTTP status (None when no
    member could be reached), body the decoded JSON answer (or text)."""

    def __init__(self, what, status, body):
        super().__init__(f"etcd {what}: {status} {body}")
        self.status, self.body = status, body


def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text or "")


def prefix_end(prefix):
    """range_end for every key starting with prefix: the prefix with its last byte + 1."""
    raw = bytearray(prefix.encode() if isinstance(prefix, str) else prefix)
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return b"\0"
    raw[-1] += 1
    return bytes(raw)


def _kv(obj):
    return KV(unb64(obj.get("key")).decode("utf-8", "replace"), unb64(obj.get("value")),
              int(obj.get("mod_revision", 0)), int(obj.get("create_revision", 0)),
              int(obj.get("version", 0)), int(obj.get("lease", 0)))


class Member:
    """One etcd member: fixed name, ports and data dir; proc is the running process or None."""

    def __init__(self, index, client_port, peer_port, data_dir):
        self.index = index
        self.name = f"m{index}"
        self.client_port, self.peer_port = client_port, peer_port
        self.data_dir = data_dir
        self.proc = None

    @property
    def client_url(self):
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self):
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self):
        return self.proc is not None and self.proc.alive()


class EtcdCluster:
    """size members started by start() (or on entering `with`); see the module comment."""

    def __init__(self, size=3, heartbeat_ms=100, election_ms=1000):
        if not os.access(ETCD_BIN, os.X_OK):
            raise AssertionError(f"no etcd at {ETCD_BIN}: scripts/setup.sh installs etcd-server "
                                 "(or set WEIR_ETCD_BIN)")
        self.root = tempfile.mkdtemp(prefix="weir-etcd-")
        self.token = "weir-it-" + uuid.uuid4().hex[:12]
        self.heartbeat_ms, self.election_ms = heartbeat_ms, election_ms
        self._cleanups = []
        self._closed = False
        self.members = [Member(i, h.dead_port(), h.dead_port(), os.path.join(self.root, f"m{i}"))
                        for i in range(1, size + 1)]
        atexit.register(self.close)

    # -- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    def _argv(self, m):
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [ETCD_BIN, "--name", m.name, "--data-dir", m.data_dir,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new",
                "--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms),
                "--logger", "zap", "--log-outputs", "stderr"]

    def _register(self, fn, *args):
        self._cleanups.append((fn, args))

    def _launch(self, m):
        if m.running():
            raise AssertionError(f"etcd {m.name} is already running")
        # The same command starts a member the first time and restarts it: an existing data
        # dir wins over --initial-cluster-state new.
        m.proc = h.Proc(self._argv(m), self._register)

    def start(self, timeout=30.0):
        """Starts every member and waits until each one answers /health with a leader."""
        for m in self.members:
            self._launch(m)
        self.wait_healthy(timeout=timeout)
        return self

    def kill(self, i):
        """kill -9 of member i (1-based), waiting for it to be gone."""
        m = self.member(i)
        if m.running():
            os.kill(m.proc.pid, signal.SIGKILL)
            m.proc.wait_exit(10)

    def stop(self, i, timeout=15.0):
        """SIGTERM to member i, then SIGKILL if it is still there after timeout (the last
        member of a cluster without quorum takes about 7 s trying to hand over leadership)."""
        m = self.member(i)
        if m.running():
            m.proc.signal(signal.SIGTERM)
            if m.proc.wait_exit(timeout) is None:
                self.kill(i)

    def restart(self, i, wait=True, timeout=30.0):
        """Starts member i again on its data dir; with wait, until it answers /health with a
        leader (so only when a quorum is up with it)."""
        m = self.member(i)
        self._launch(m)
        if wait:
            self.wait_healthy([i], timeout=timeout)

    def close(self):
        """Stops every member (kill -9: nothing of theirs is kept) and removes the data dirs."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for fn, args in reversed(self._cleanups):
            try:
                fn(*args)
            except Exception as e:  # every cleanup runs even when one fails
                errors.append(repr(e))
        shutil.rmtree(self.root, True)
        atexit.unregister(self.close)
        if errors:
            raise AssertionError("etcd cleanup: " + "; ".join(errors))

    def member(self, i):
        if not 1 <= i <= len(self.members):
            raise IndexError(f"no etcd member {i} (1..{len(self.members)})")
        return self.members[i - 1]

    def running(self):
        return [m.index for m in self.members if m.running()]

    # -- health and leadership

    def healthy(self, i, timeout=1.0):
        """True when member i answers GET /health with {"health":"true"} (it has a leader)."""
        m = self.member(i)
        if not m.running():
            return False
        try:
            with urllib.request.urlopen(m.client_url + "/health", timeout=timeout) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, members=None, timeout=30.0):
        """Waits until each of members (1-based; default all) answers /health with a leader;
        fails at once, with the member's log, when one of them exits."""
        members = list(members or range(1, len(self.members) + 1))

        def check():
            gone = [i for i in members if not self.member(i).running()]
            if gone:
                raise AssertionError("etcd exited: " + self._tails(gone))
            return all(self.healthy(i) for i in members)

        if not h.wait_until(check, timeout, 0.05):
            raise AssertionError(f"etcd members {members} not healthy within {timeout}s: "
                                 + self._tails(members))

    def _tails(self, members):
        out = []
        for i in members:
            m = self.member(i)
            exit_code = m.proc.popen.poll() if m.proc else None
            out.append(f"\n--- {m.name} (exit {exit_code})\n{m.proc.tail(15) if m.proc else ''}")
        return "".join(out)

    def has_quorum(self):
        return any(self.healthy(i) for i in self.running())

    def wait_no_quorum(self, timeout=15.0):
        """Waits until no running member has a leader (after stopping a majority): /health
        fails and the last leader has stepped down. Until it steps down (an election timeout
        after losing its peers) a leader still appends writes to its log, and such a write
        commits when the quorum is back, although etcd answered it with a timeout."""
        if not h.wait_until(lambda: not self.has_quorum() and self.leader() is None,
                            timeout, 0.1):
            raise AssertionError(f"etcd still has a leader {timeout}s after losing its quorum")

    def status(self, i, timeout=2.0):
        return self.call("/v3/maintenance/status", {}, member=i, timeout=timeout)

    def leader(self, timeout=2.0):
        """Index of the member that leads, or None when no running member knows a leader."""
        ids = {}
        leader_id = None
        for i in self.running():
            try:
                st = self.status(i, timeout)
            except EtcdError:
                continue
            ids[st["header"]["member_id"]] = i
            leader_id = st.get("leader", leader_id)
        return ids.get(leader_id)

    def wait_leader(self, timeout=15.0):
        """Waits until the running members agree on a running leader; returns its index."""
        lead = h.wait_until(self.leader, timeout, 0.05)
        if lead is None:
            raise AssertionError(f"no etcd leader among members {self.running()} within "
                                 f"{timeout}s: " + self._tails(self.running()))
        return lead

    def followers(self):
        lead = self.leader()
        return [i for i in self.running() if i != lead]

    # -- gateway calls

    def call(self, path, body, member=None, timeout=5.0):
        """POST path with JSON body to member (1-based), or to the first running member that
        accepts the connection; returns the decoded answer, raises EtcdError otherwise.
        Without a quorum a write or linearizable read hangs for about 7 s in etcd before it
        fails: give such calls a short timeout."""
        order = [member] if member is not None else self.running()
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        last = None
        for i in order:
            req = urllib.request.Request(self.member(i).client_url + path, data=data,
                                         headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    return json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                text = e.read()
                try:
                    answer = json.loads(text)
                except ValueError:
                    answer = text.decode("utf-8", "replace")
                raise EtcdError(f"{path} on {self.member(i).name}", e.code, answer) from None
            except OSError as e:  # refused, reset, timed out: try the next member
                last = e
        raise EtcdError(path, None, repr(last))

    def put(self, key, value, lease=None, **kw):
        """Writes key; value is bytes, str, or an object stored as JSON. Returns the revision."""
        if not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        return int(self.call("/v3/kv/put", body, **kw)["header"]["revision"])

    def get(self, key, serializable=False, **kw):
        """The KV of key, or None. serializable: the member's local copy (answers without a
        quorum)."""
        body = {"key": b64(key)}
        if serializable:
            body["serializable"] = True
        kvs = self.call("/v3/kv/range", body, **kw).get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    def get_json(self, key, **kw):
        kv = self.get(key, **kw)
        return None if kv is None else json.loads(kv.value)

    def get_prefix(self, prefix, serializable=False, **kw):
        """Every KV under prefix, in key order."""
        body = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
        if serializable:
            body["serializable"] = True
        return [_kv(x) for x in self.call("/v3/kv/range", body, **kw).get("kvs", [])]

    def delete_prefix(self, prefix, **kw):
        answer = self.call("/v3/kv/deleterange",
                           {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}, **kw)
        return int(answer.get("deleted", 0))

    def revision(self, **kw):
        """The cluster's current revision (a linearizable read)."""
        answer = self.call("/v3/kv/range", {"key": b64("\0"), "keys_only": True, "limit": 1},
                           **kw)
        return int(answer["header"]["revision"])

    def cas(self, key, mod_revision, value, **kw):
        """Writes key only if its mod_revision is still mod_revision (0: only if absent);
        returns True when it did."""
        if not isinstance(value, (bytes, str)):
            value = json.dumps(value)
        compare = ({"key": b64(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(mod_revision)} if mod_revision else
                   {"key": b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"})
        answer = self.call("/v3/kv/txn", {"compare": [compare], "success": [
            {"request_put": {"key": b64(key), "value": b64(value)}}]}, **kw)
        return bool(answer.get("succeeded"))  # a failed compare omits the field
