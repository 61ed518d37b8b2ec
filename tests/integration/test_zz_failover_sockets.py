"""Built-in failover with every node known by its Unix-domain socket (nodes[].host a
directory): pglane sees the primary die, promotes a standby through its socket, re-points the
other standby at the new primary (primary_conninfo: its socket directory, or its
nodes[].replication_host when it has one), which then streams from it, and a write through the
auto port lands on the new primary. That pglane refuses to re-point a standby it reaches at
another address at a host-local one is unit-tested (tests/health/test_failover.cpp).
Destructive: each test leaves a fresh cluster behind."""

import unittest

import psycopg2

import failover_common as fc
import pgwire


class FailoverOverSockets(unittest.TestCase):

    def fail_over(self, replication_host=None):
        """Kills n0 under a pglane that knows every node by its socket; returns the new
        primary, the other standby and that standby's primary_conninfo once it streams."""
        c = fc.cluster()
        fc.rebuild(c)
        self.addCleanup(fc.restore, c)
        nodes = [{"name": n, "host": str(c.socket_dir(n)), "port": c.port(n)} for n in ("n0", "n1", "n2")]
        if replication_host:
            for node in nodes:
                node["replication_host"] = replication_host
        p = fc.failover_pglane(c, extra={"nodes": nodes})
        self.addCleanup(p.stop)

        fc.kill_node(c, "n0")
        new = fc.wait_new_primary(p, "n0", timeout=30)
        other = ({"n1", "n2"} - {new}).pop()
        pgwire.poll(lambda: pgwire.cluster_streaming(c, standbys=(other,), primary=new), 30,
                    f"{other} streaming from the new primary {new}")
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
        return new, other, c.value(other, "SHOW primary_conninfo"), c

    def test_the_standby_is_re_pointed_at_the_new_primary_s_socket(self):
        new, other, conninfo, c = self.fail_over()
        self.assertIn(f"host='{c.socket_dir(new)}'", conninfo)

    def test_a_replication_host_is_what_the_standby_gets(self):
        new, other, conninfo, c = self.fail_over(replication_host="127.0.0.1")
        self.assertIn("host='127.0.0.1'", conninfo)
        self.assertIn(f"port='{c.port(new)}'", conninfo)


if __name__ == "__main__":
    unittest.main()
