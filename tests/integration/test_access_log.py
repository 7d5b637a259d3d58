"""The access log: one JSON line per routed request, buffered per worker, reopened on SIGUSR1."""

import json
import os
import signal
import unittest

from harness import WeirTestCase, get, single_service_config, wait_until


class AccessLog(WeirTestCase):
    def read_lines(self, path):
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def test_lines_and_reopen(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(single_service_config(origin, proxy={"access_log": path}))
        for i in range(10):
            r = get(edge.addr, f'/x/{i}?q="quoted"', headers=[("X-Request-Id", f"id-{i}")])
            self.assertEqual(r.status, 200)
        lines = wait_until(lambda: len(self.read_lines(path)) >= 10 and self.read_lines(path), 5)
        self.assertEqual(len(lines), 10, lines)
        by_id = {line["request_id"]: line for line in lines}
        line = by_id["id-3"]
        self.assertEqual((line["method"], line["path"], line["status"], line["client"]),
                         ("GET", '/x/3?q="quoted"', 200, "127.0.0.1"))
        self.assertEqual((line["service"], line["version"], line["upstream"]),
                         ("svc", "v1", origin.addr))
        self.assertEqual(line["host"], "test.local")
        self.assertGreater(line["bytes"], 0)
        self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertIn("duration_ms", line)

        # logrotate: move the file, SIGUSR1, and new lines go to a new file at the same path.
        os.rename(path, path + ".1")
        edge.signal(signal.SIGUSR1)
        self.assertTrue(wait_until(lambda: os.path.exists(path), 5), "no new file after SIGUSR1")
        self.assertEqual(get(edge.addr, "/after").status, 200)
        self.assertTrue(wait_until(lambda: len(self.read_lines(path)) == 1, 5))
        self.assertEqual(self.read_lines(path)[0]["path"], "/after")
        self.assertEqual(len(self.read_lines(path + ".1")), 10)

    def test_lines_are_flushed_at_shutdown(self):
        origin = self.backend("origin")
        path = os.path.join(self.tmpdir(), "access.log")
        edge = self.weir(single_service_config(origin, proxy={"access_log": path}))
        self.assertEqual(get(edge.addr, "/").status, 200)
        edge.signal(signal.SIGTERM)
        self.assertEqual(edge.wait_exit(10), 0)
        self.assertEqual(len(self.read_lines(path)), 1)


if __name__ == "__main__":
    unittest.main()
