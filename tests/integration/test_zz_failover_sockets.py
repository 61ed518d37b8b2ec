"""Built-in failover with every node known by its Unix-domain socket (nodes[].host a
directory): pglane sees the primary die, promotes a standby through its socket, re-points the
other standby at the new primary's socket (primary_conninfo host=<dir>), which then streams
from it, and a write through the auto port lands on the new primary. That pglane refuses to
re-point a standby it reaches at another address at such a host-local one is unit-tested
(tests/health/test_failover.cpp). Destructive: the module leaves a fresh cluster behind."""

import unittest

import psycopg2

import failover_common as fc
import pgwire


class FailoverOverSockets(unittest.TestCase):

    def test_promotion_repointing_and_writes_over_the_nodes_sockets(self):
        c = fc.cluster()
        fc.rebuild(c)
        self.addCleanup(fc.restore, c)
        nodes = [{"name": n, "host": str(c.socket_dir(n)), "port": c.port(n)} for n in ("n0", "n1", "n2")]
        p = fc.failover_pglane(c, extra={"nodes": nodes})
        self.addCleanup(p.stop)

        fc.kill_node(c, "n0")
        new = fc.wait_new_primary(p, "n0", timeout=30)
        other = ({"n1", "n2"} - {new}).pop()
        pgwire.poll(lambda: pgwire.cluster_streaming(c, standbys=(other,), primary=new), 30,
                    f"{other} streaming from the new primary {new}")
        self.assertIn(f"host='{c.socket_dir(new)}'", c.value(other, "SHOW primary_conninfo"))
        self.assertEqual(fc.log_events(p, "standby_repoint_failed"), [])

        conn = psycopg2.connect(p.auto_dsn(), connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE failover_sockets (v int)")
                cur.execute("INSERT INTO failover_sockets VALUES (1) RETURNING current_setting('cluster_name')")
                self.assertEqual(cur.fetchone()[0], new)
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
