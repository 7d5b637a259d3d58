"""weir --demo: embedded blue/green backends behind a 90/10 split, no config file needed."""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


class Demo(h.WeirTestCase):
    def setUp(self):
        self.demo = h.Weir(self.addCleanup, ["--demo", "--demo-port", "0"])

    def test_serves_blue_and_green_90_10(self):
        result = h.load(self.demo.addr, threads=4, requests=1000)
        self.assertLoadClean(result, min_total=1000)
        self.assertEqual(set(result.backends), {"blue", "green"})
        self.assertShare(result.backends, "green", 0.10, 0.04)

    def test_sigterm_exits_0(self):
        self.assertEqual(h.get(self.demo.addr, "/").status, 200)
        self.demo.signal(signal.SIGTERM)
        self.assertEqual(self.demo.wait_exit(5.0), 0, self.demo.tail())


if __name__ == "__main__":
    unittest.main()
