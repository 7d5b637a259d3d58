"""The etcd cluster the fleet tests stand on (etcd_cluster.py): 3 real members start healthy,
survive kill -9 of the leader, take a restarted member back with the writes it missed, refuse
writes without a quorum and accept them again once it is back, and leave nothing behind."""

import os
import time
import unittest

import harness as h
from etcd_cluster import EtcdCluster, EtcdError, prefix_end


class EtcdClusterSelfTest(unittest.TestCase):
    def test_prefix_end(self):
        self.assertEqual(prefix_end("/weir/a/"), b"/weir/a0")
        self.assertEqual(prefix_end(b"a\xff"), b"b")

    def test_kill_restart_and_quorum(self):
        cluster = EtcdCluster()
        self.addCleanup(cluster.close)
        started = time.monotonic()
        cluster.start()
        print(f"\netcd: 3 members healthy in {time.monotonic() - started:.2f} s")
        self.assertEqual(len(set(cluster.endpoints)), 3)
        self.assertEqual(cluster.running(), [1, 2, 3])

        first = cluster.put("/it/a", "one")
        kv = cluster.get("/it/a")
        self.assertEqual((kv.value, kv.mod_revision, kv.version), (b"one", first, 1))
        self.assertIsNone(cluster.get("/it/missing"))
        self.assertTrue(cluster.cas("/it/a", first, {"n": 2}))
        self.assertFalse(cluster.cas("/it/a", first, {"n": 3}), "a stale mod_revision loses")
        self.assertFalse(cluster.cas("/it/a", 0, {"n": 4}), "create-if-absent on an existing key")
        self.assertEqual(cluster.get_json("/it/a"), {"n": 2})

        # kill -9 of the leader: the other two elect one and keep taking writes.
        lead = cluster.wait_leader()
        cluster.kill(lead)
        self.assertNotIn(lead, cluster.running())
        killed_at = time.monotonic()
        new_lead = cluster.wait_leader(timeout=10)
        print(f"etcd: member {lead} killed, member {new_lead} leads after "
              f"{time.monotonic() - killed_at:.2f} s")
        self.assertNotEqual(new_lead, lead)
        missed = cluster.put("/it/b", "written while m%d was down" % lead, timeout=10)

        # The restarted member catches up on what it missed (its own local copy).
        cluster.restart(lead)
        self.assertTrue(h.wait_until(
            lambda: cluster.get("/it/b", serializable=True, member=lead) is not None, 10),
            "the restarted member never got the write it missed")
        self.assertEqual(cluster.get("/it/b", serializable=True, member=lead).mod_revision,
                         missed)

        # Two of three stopped: no leader, writes fail, local reads still answer.
        a, b = cluster.followers()
        cluster.stop(a)
        cluster.stop(b)
        cluster.wait_no_quorum()
        alone = cluster.running()[0]
        # etcd itself gives up on the write after about 7 s; a client that stops waiting
        # sooner leaves it pending, and it commits if the quorum is back within those 7 s.
        with self.assertRaises(EtcdError) as refused:
            cluster.put("/it/c", "no quorum", timeout=15)
        self.assertIn(refused.exception.status, (500, 503), refused.exception)
        self.assertEqual(cluster.get("/it/b", serializable=True, member=alone).mod_revision,
                         missed)

        # Back to a quorum: writes go through; the refused one never happened.
        cluster.restart(a)
        cluster.wait_healthy([a, alone])
        self.assertGreater(cluster.put("/it/d", "quorum again", timeout=10), missed)
        self.assertIsNone(cluster.get("/it/c"))
        cluster.restart(b)
        self.assertEqual([kv.key for kv in cluster.get_prefix("/it/")],
                         ["/it/a", "/it/b", "/it/d"])
        self.assertEqual(cluster.delete_prefix("/it/"), 3)

        procs = [m.proc for m in cluster.members]
        root = cluster.root
        cluster.close()
        self.assertEqual([p.alive() for p in procs], [False] * 3)
        self.assertFalse(os.path.exists(root))
        cluster.close()  # idempotent


if __name__ == "__main__":
    unittest.main()
