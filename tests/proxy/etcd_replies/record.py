#!/usr/bin/python3
"""Records the raw HTTP replies of a real etcd 3.4 JSON gateway that
tests/proxy/etcd_client_test.cc replays. Starts throwaway members on 127.0.0.1 (free ports, a
temp data dir), sends each call with curl --raw -i, writes <name>.http (status line, headers
and the body with its framing as sent) next to this script, and stops every member.

Usage: /usr/bin/python3 tests/proxy/etcd_replies/record.py   (needs /usr/bin/etcd and curl)
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
procs = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(s):
    return base64.b64encode(s.encode()).decode()


def start(name, data, client, peer, cluster, extra=()):
    p = subprocess.Popen(
        ["/usr/bin/etcd", "--name", name, "--data-dir", data,
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", cluster, "--initial-cluster-token", "weir-record",
         "--initial-cluster-state", "new", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def wait_healthy(client, timeout=20):
    until = time.time() + timeout
    while time.time() < until:
        r = subprocess.run(["curl", "-s", "-m", "1", f"http://127.0.0.1:{client}/health"],
                           capture_output=True, text=True)
        if '"health":"true"' in r.stdout:
            return
        time.sleep(0.1)
    raise SystemExit("etcd did not become healthy")


def call(client, path, body, save=None, headers=(), max_time=10):
    argv = ["curl", "-s", "-i", "--raw", "-m", str(max_time), "-X", "POST",
            f"http://127.0.0.1:{client}{path}", "-d", json.dumps(body)]
    for h in headers:
        argv += ["-H", h]
    raw = subprocess.run(argv, capture_output=True).stdout
    if save:
        with open(os.path.join(HERE, save + ".http"), "wb") as f:
            f.write(raw)
    head, _, payload = raw.partition(b"\r\n\r\n")
    return payload


def json_of(payload):
    return json.loads(payload.decode())


def watch(client, body, seconds, save, headers=()):
    """A watch stream for `seconds`; what arrived is saved (it never ends by itself)."""
    argv = ["curl", "-s", "-i", "--raw", "-N", "-X", "POST", f"http://127.0.0.1:{client}/v3/watch",
            "-d", json.dumps(body)]
    for h in headers:
        argv += ["-H", h]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    return p, save, seconds


def finish_watch(w):
    p, save, seconds = w
    try:
        out, _ = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate()
    with open(os.path.join(HERE, save + ".http"), "wb") as f:
        f.write(out)


def main():
    tmp = tempfile.mkdtemp(prefix="weir-etcd-record-")
    try:
        record_single(tmp)
        record_no_leader(tmp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def record_single(tmp):
    c, peer = free_port(), free_port()
    start("s1", os.path.join(tmp, "s1"), c, peer, f"s1=http://127.0.0.1:{peer}",
          ["--experimental-watch-progress-notify-interval", "1s"])
    wait_healthy(c)
    hl = ["Grpc-Metadata-Hasleader: true"]
    call(c, "/v3/kv/put", {"key": b64("/app/a"), "value": b64("hello")}, "put", hl)
    call(c, "/v3/kv/put", {"key": b64("/app/b"), "value": b64("world")}, None, hl)
    call(c, "/v3/kv/range", {"key": b64("/app/a")}, "range_found", hl)
    call(c, "/v3/kv/range", {"key": b64("/nokey")}, "range_missing", hl)
    call(c, "/v3/kv/range", {"key": b64("/app/"), "range_end": b64("/app0"),
                             "sort_target": "MOD", "sort_order": "ASCEND"}, "range_prefix", hl)
    call(c, "/v3/kv/put", {"key": "", "value": b64("x")}, "put_no_key", hl)
    a = json_of(call(c, "/v3/kv/range", {"key": b64("/app/a")}))["kvs"][0]
    rev = a["mod_revision"]
    cas = lambda expect: {
        "compare": [{"key": b64("/app/a"), "target": "MOD", "result": "EQUAL",
                     "mod_revision": expect}],
        "success": [{"request_put": {"key": b64("/app/a"), "value": b64("v2")}},
                    {"request_put": {"key": b64("/events/1"), "value": b64("audit")}}],
        "failure": [{"request_range": {"key": b64("/app/a")}}]}
    call(c, "/v3/kv/txn", cas(rev), "txn_cas_ok", hl)
    call(c, "/v3/kv/txn", cas(rev), "txn_cas_failed", hl)
    call(c, "/v3/kv/txn", {"compare": [], "success": [
        {"request_range": {"key": b64("/app/"), "range_end": b64("/app0")}},
        {"request_delete_range": {"key": b64("/app/b")}}]}, "txn_range", hl)
    call(c, "/v3/kv/deleterange", {"key": b64("/app/a")}, "delete_one", hl)
    call(c, "/v3/kv/deleterange", {"key": b64("/app/a")}, "delete_none", hl)
    lease = json_of(call(c, "/v3/lease/grant", {"TTL": "30"}, "lease_grant", hl))["ID"]
    call(c, "/v3/lease/keepalive", {"ID": lease}, "lease_keepalive", hl)
    call(c, "/v3/kv/put", {"key": b64("/app/eph"), "value": b64("x"), "lease": lease},
         None, hl)
    call(c, "/v3/lease/revoke", {"ID": lease}, "lease_revoke", hl)
    call(c, "/v3/lease/keepalive", {"ID": lease}, "lease_keepalive_gone", hl)
    call(c, "/v3/lease/revoke", {"ID": lease}, "lease_revoke_gone", hl)
    call(c, "/v3/kv/put", {"key": b64("/app/eph"), "value": b64("x"), "lease": lease},
         "put_lease_gone", hl)

    # Watch: history replay with a PUT and a DELETE (prev_kv), live events, progress notices.
    start_rev = json_of(call(c, "/v3/kv/put", {"key": b64("/app/w1"), "value": b64("one")}))[
        "header"]["revision"]
    call(c, "/v3/kv/deleterange", {"key": b64("/app/w1")})
    w = watch(c, {"create_request": {"key": b64("/app/"), "range_end": b64("/app0"),
                                     "start_revision": start_rev, "prev_kv": True,
                                     "progress_notify": True}}, 2.5, "watch_events", hl)
    time.sleep(0.5)
    call(c, "/v3/kv/put", {"key": b64("/app/w2"), "value": b64("two")})
    finish_watch(w)

    # Compaction: a watch from before the compacted revision is cancelled.
    now = json_of(call(c, "/v3/kv/put", {"key": b64("/app/w3"), "value": b64("three")}))[
        "header"]["revision"]
    call(c, "/v3/kv/compaction", {"revision": now, "physical": True}, "compaction")
    call(c, "/v3/kv/range", {"key": b64("/app/w3"), "revision": "2"}, "range_compacted", hl)
    finish_watch(watch(c, {"create_request": {"key": b64("/app/"), "range_end": b64("/app0"),
                                              "start_revision": "2", "prev_kv": True}}, 1.0,
                       "watch_compacted", hl))

    # Auth: alice may use /app/ only.
    for path, body in [
            ("/v3/auth/user/add", {"name": "root", "password": "rootpw"}),
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
            ("/v3/auth/role/add", {"name": "app"}),
            ("/v3/auth/role/grant", {"name": "app", "perm": {
                "permType": "READWRITE", "key": b64("/app/"), "range_end": b64("/app0")}}),
            ("/v3/auth/user/add", {"name": "alice", "password": "alicepw"}),
            ("/v3/auth/user/grant", {"user": "alice", "role": "app"}),
            ("/v3/auth/enable", {})]:
        call(c, path, body)
    call(c, "/v3/auth/authenticate", {"name": "alice", "password": "alicepw"}, "auth_ok")
    call(c, "/v3/auth/authenticate", {"name": "alice", "password": "wrong"}, "auth_wrong")
    call(c, "/v3/kv/range", {"key": b64("/app/a")}, "auth_bad_token",
         ["Authorization: bogustoken"])
    call(c, "/v3/kv/range", {"key": b64("/app/a")}, "auth_no_token")
    token = json_of(call(c, "/v3/auth/authenticate", {"name": "alice", "password": "alicepw"}))[
        "token"]
    call(c, "/v3/kv/range", {"key": b64("/other")}, "auth_denied", [f"Authorization: {token}"])
    finish_watch(watch(c, {"create_request": {"key": b64("/other/")}}, 1.0,
                       "watch_denied", [f"Authorization: {token}"]))


def record_no_leader(tmp):
    """Two members, one killed: the other has no leader."""
    c1, c2, p1, p2 = free_port(), free_port(), free_port(), free_port()
    cluster = f"n1=http://127.0.0.1:{p1},n2=http://127.0.0.1:{p2}"
    start("n1", os.path.join(tmp, "n1"), c1, p1, cluster)
    m2 = start("n2", os.path.join(tmp, "n2"), c2, p2, cluster)
    wait_healthy(c1)
    wait_healthy(c2)
    hl = ["Grpc-Metadata-Hasleader: true"]
    w = watch(c1, {"create_request": {"key": b64("/app/"), "range_end": b64("/app0")}}, 12,
              "watch_no_leader", hl)
    time.sleep(0.5)
    m2.kill()
    m2.wait()
    time.sleep(3)
    call(c1, "/v3/kv/put", {"key": b64("/app/a"), "value": b64("x")}, "put_no_leader", hl)
    call(c1, "/v3/kv/put", {"key": b64("/app/a"), "value": b64("x")}, "put_timed_out",
         max_time=15)
    call(c1, "/v3/kv/txn", {"compare": [], "success": [{"request_put": {
        "key": b64("/app/a"), "value": b64("x")}}]}, "txn_deadline", max_time=15)
    finish_watch(w)


if __name__ == "__main__":
    main()
