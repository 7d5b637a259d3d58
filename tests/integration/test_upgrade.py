"""Binary upgrade without downtime: a second weir started with --upgrade binds the same ports
(SO_REUSEPORT, data and admin listeners), the first one gets SIGQUIT, stops accepting, finishes
what it has and exits 0, and no request of a load running across all of it fails. Without
--upgrade a second weir refuses the ports a live one holds."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (WEIR_BIN, LoadResult, WeirTestCase, admin_call, admin_settings, get, load,
                     render_config, route, service, start_weir, version, wait_until)


class FreshConnections:
    """GET / on a new connection each time, from `threads` threads, until stopped: the shape
    of traffic that finds a closing listener's accept queue."""

    def __init__(self, addr, threads=2, max_time=30.0):
        self.addr, self.max_time = addr, max_time
        self.result = LoadResult()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self):
        deadline = time.monotonic() + self.max_time
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                resp = get(self.addr, "/")
                with self.result.lock:
                    self.result.statuses[resp.status] += 1
            except (OSError, AssertionError) as e:
                with self.result.lock:
                    self.result.errors.append((time.monotonic(), repr(e)))


def edge_connections(edge):
    """Open client connections of weir, from its /metrics."""
    body = admin_call(edge, "GET", "/metrics", token="viewer").body.decode()
    return sum(float(m.group(1)) for m in
               re.finditer(r'^weir_connections_active\{listener="[^"]*"\} (\S+)$', body, re.M))


class Upgrade(WeirTestCase):
    def config(self, listener_port=0, admin_port=0, protocols=("http1",)):
        admin = admin_settings(self.tmpdir(), address=f"127.0.0.1:{admin_port}")
        text = render_config([service("shop", version("blue", 50, self.blue),
                                      version("green", 50, self.green))],
                             routes=[route("shop")], admin=admin,
                             proxy={"drain_timeout_ms": 8000},
                             listeners=[{"name": "public", "protocols": list(protocols)}])
        # render_config binds listeners to port 0; the successor takes the same port.
        return text.replace('name = "public"\naddress = "127.0.0.1:0"',
                            f'name = "public"\naddress = "127.0.0.1:{listener_port}"')

    def test_sigquit_hands_over_to_a_new_process_under_load(self):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        old = start_weir(self.addCleanup, self.config(),
                         path=os.path.join(self.tmpdir(), "old.toml"))
        addr, admin_addr = old.addr, old.admin
        # Runtime state the successor must pick up from the shared state_dir.
        r = admin_call(old, "PUT", "/api/v1/services/shop/weights", headers=[("If-Match", "*")],
                       body={"weights": {"blue": 100, "green": 0}, "reason": "before upgrade"})
        self.assertEqual(r.status, 200, r)

        keepalive = {}
        runner = threading.Thread(
            target=lambda: keepalive.update(result=load(addr, threads=4, duration=9.0)),
            daemon=True)
        with FreshConnections(addr) as fresh:
            runner.start()
            time.sleep(2.0)
            new = start_weir(self.addCleanup, self.config(addr[1], admin_addr[1]),
                             extra_args=("--upgrade",),
                             path=os.path.join(self.tmpdir(), "new.toml"))
            self.assertEqual((new.addr, new.admin), (addr, admin_addr))
            time.sleep(1.5)  # both accept now: the kernel spreads connections over the two
            quit_at = time.monotonic()
            old.signal(signal.SIGQUIT)
            self.assertEqual(old.wait_exit(15), 0, old.tail())
            exited_in = time.monotonic() - quit_at
            time.sleep(2.0)  # the new one alone
        runner.join(20)
        self.assertIn("result", keepalive, "the keep-alive load did not finish")
        print(f"\nupgrade: old weir exited {exited_in:.2f} s after SIGQUIT; "
              f"{keepalive['result'].total} keep-alive and {fresh.result.total} "
              f"fresh-connection requests")
        self.assertLoadClean(keepalive["result"], min_total=200)
        self.assertLoadClean(fresh.result, min_total=50)
        self.assertLess(exited_in, 8.0, "the old weir waited for drain_timeout_ms")
        self.assertEqual(set(keepalive["result"].backends), {"blue"})

        # Everything goes to the new process now: its admin API answers with the state the
        # old one saved, and it takes the traffic.
        r = admin_call(new, "GET", "/api/v1/services/shop", token="viewer")
        self.assertEqual(r.status, 200, r)
        self.assertEqual({v["name"]: v["effective_weight"] for v in r.json()["versions"]},
                         {"blue": 100, "green": 0})
        served_before = self.blue.requests()
        self.assertEqual(get(addr, "/").status, 200)
        self.assertEqual(self.blue.requests(), served_before + 1)
        self.assertTrue(new.alive())
        # One audit sequence across both processes.
        r = admin_call(new, "PUT", "/api/v1/services/shop/weights", headers=[("If-Match", "*")],
                       body={"weights": {"green": 10}, "reason": "after upgrade"})
        self.assertEqual(r.status, 200, r)
        events = admin_call(new, "GET", "/api/v1/events", token="viewer").json()["events"]
        self.assertEqual([e["seq"] for e in events], list(range(1, len(events) + 1)))
        self.assertEqual([e["reason"] for e in events if e["action"] == "set_weights"],
                         ["before upgrade", "after upgrade"])
        self.assertTrue(any(re.search(r"shutting down", line) for line in old.output("stderr")))

    def refused(self, config, *args):
        """weir on `config` with `args`: its exit code and stderr; it must not get ready."""
        path = os.path.join(self.tmpdir(), "second.toml")
        with open(path, "w") as f:
            f.write(config)
        run = subprocess.run([WEIR_BIN, "--config", path, *args], capture_output=True, text=True,
                             timeout=15, stdin=subprocess.DEVNULL)
        self.assertNotIn("weir: ready", run.stderr)
        return run.returncode, run.stderr

    def test_a_second_weir_refuses_the_ports_of_a_live_one(self):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        first = start_weir(self.addCleanup, self.config())
        port, admin_port = first.addr[1], first.admin[1]
        pid = str(first.popen.pid)
        # The same data port (its admin port elsewhere): refused, naming the port and the holder.
        code, err = self.refused(self.config(port, 0))
        self.assertEqual(code, 1, err)
        self.assertRegex(err, rf"listener public: port {port} is in use by weir pid {pid}; .*"
                              r"--upgrade")
        self.assertRegex(err, r"\.toml:\d+:\d+: listener public")
        # The same admin port alone, and on the wildcard address: refused too (the first one's
        # admin port was picked by the kernel and claimed once bound, so its holder is named).
        code, err = self.refused(self.config(0, admin_port))
        self.assertEqual(code, 1, err)
        self.assertIn(f"admin: port {admin_port} is in use by weir pid {pid}", err)
        code, err = self.refused(self.config(0, admin_port).replace(
            f'"127.0.0.1:{admin_port}"', f'"0.0.0.0:{admin_port}"'))
        self.assertEqual(code, 1, err)
        # Every request still goes to the first one, which keeps running.
        self.assertEqual(get(first.addr, "/").status, 200)
        self.assertTrue(first.alive())
        # While an upgrade shares the ports, a third weir is refused, with --upgrade too.
        second = start_weir(self.addCleanup, self.config(port, admin_port),
                            extra_args=("--upgrade",))
        code, err = self.refused(self.config(port, admin_port), "--upgrade")
        self.assertEqual(code, 1, err)
        # (The admin port is claimed first; the upgrade shares it like the data port.)
        self.assertIn(f"admin: port {admin_port} is already shared by weir pid", err)
        # Once the old one is gone, the upgraded one holds the ports on its own.
        first.signal(signal.SIGQUIT)
        self.assertEqual(first.wait_exit(15), 0, first.tail())
        code, err = self.refused(self.config(port, 0))
        self.assertIn(f"is in use by weir pid {second.popen.pid}", err)
        self.assertEqual(get(second.addr, "/").status, 200)

    def test_a_port_another_program_listens_on_is_refused(self):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        other = socket.socket()
        self.addCleanup(other.close)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen(8)
        port = other.getsockname()[1]
        code, err = self.refused(self.config(port, 0))
        self.assertEqual(code, 1, err)
        self.assertIn(f"port {port} is in use by another process", err)

    def test_sigquit_closes_idle_keepalive_and_answers_the_next_request_with_close(self):
        self.blue = self.backend("blue")
        self.green = self.backend("green")
        # http1 + h2c: a connection's protocol is chosen from its first bytes.
        edge = start_weir(self.addCleanup, self.config(protocols=("http1", "h2c")))
        idle = self.client(edge)
        self.assertEqual(idle.get("/").status, 200)
        busy = self.client(edge)
        self.assertEqual(busy.get("/").status, 200)
        silent = self.client(edge)  # connected, nothing sent yet: like one taken from the backlog
        self.assertTrue(wait_until(lambda: edge_connections(edge) == 3, 5))
        edge.signal(signal.SIGQUIT)
        self.assertTrue(wait_until(lambda: any("shutting down" in line
                                               for line in edge.output("stderr")), 5))
        time.sleep(0.2)  # the workers take the news at their next loop turn
        # A request sent right after the signal is still answered, with Connection: close.
        resp = busy.get("/")
        self.assertEqual(resp.status, 200)
        self.assertClosesConnection(busy, resp)
        resp = silent.get("/")
        self.assertEqual(resp.status, 200)
        self.assertClosesConnection(silent, resp)
        # One that stays idle is closed within the grace.
        self.assertTrue(idle.closed_within(5.0), "idle client connection kept open")
        self.assertEqual(edge.wait_exit(10), 0, edge.tail())


if __name__ == "__main__":
    unittest.main()
