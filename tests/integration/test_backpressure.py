"""Backpressure (issue 8): a client sending faster than its server takes the data is slowed
down by pglane, not buffered without bound. A COPY FROM STDIN into a table whose trigger
sleeps 10 ms per row (the server takes about 100 KiB/s) while the client pushes as fast as
it can: after seconds the client has got only a few socket buffers' worth out, pglane's
resident memory has not grown with it, and other sessions are answered as usual. On the
relayed rw port and on the auto port (pooled)."""

import sys
import threading
import time
import unittest

import auto_common as ac
import pgwire
from pglane import AutoPglane, Pglane

ROW = b"x" * 1000
PUSH_SECONDS = 5
# What may be in flight: the socket buffers of two loopback hops (Linux allows up to a few
# MiB each way) and pglane's own bounded buffers. Without backpressure the client would get
# hundreds of MiB out in the same time.
MAX_SENT_MIB = 64
MAX_GROWTH_MIB = 32


class Backpressure(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster, cls.started_here = ac.cluster_up()
        pgwire.ensure_roles(cls.cluster)
        cls.cluster.sql("n0", f"""
            DROP TABLE IF EXISTS backpressure_t;
            CREATE TABLE backpressure_t (id int, pad text);
            CREATE OR REPLACE FUNCTION backpressure_slow() RETURNS trigger LANGUAGE plpgsql AS
              $$BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END$$;
            CREATE TRIGGER backpressure_slow BEFORE INSERT ON backpressure_t
              FOR EACH ROW EXECUTE FUNCTION backpressure_slow();
            GRANT ALL ON backpressure_t TO {pgwire.TRUST_ROLE}""")

    @classmethod
    def tearDownClass(cls):
        ac.cluster_down(cls.cluster, cls.started_here)

    def copy_flood(self, p, port):
        sock = pgwire.trust_session(port, application_name="backpressure")
        sock.sendall(pgwire.query_message("COPY backpressure_t FROM STDIN"))
        while pgwire.read_message(sock)[0] != b"G":   # CopyInResponse: the server takes data
            pass
        sent = [0]

        def push():
            chunk = b"".join(pgwire.message(b"d", b"%d\t%s\n" % (i, ROW)) for i in range(64))
            sock.settimeout(None)
            try:
                while True:
                    sock.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass   # the socket was shut down below

        before = pgwire.rss_mib(p.process.pid)
        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        try:
            time.sleep(PUSH_SECONDS)
            sent_mib = sent[0] / 2**20
            growth = pgwire.rss_mib(p.process.pid) - before
            # Another session is served as usual meanwhile.
            other = pgwire.trust_session(port)
            try:
                self.assertEqual(pgwire.simple_query(other, "SELECT 1"), b"I")
            finally:
                other.close()
        finally:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()
            pusher.join(10)
            # The server would take minutes to work through what its buffers hold.
            self.cluster.sql("n0", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE query LIKE 'COPY backpressure_t%'")
        print(f"\nbackpressure port {port}: the client got {sent_mib:.1f} MiB out in {PUSH_SECONDS} s, "
              f"pglane grew {growth:.1f} MiB", file=sys.stderr)
        self.assertGreater(sent_mib, 0)
        self.assertLess(sent_mib, MAX_SENT_MIB, f"the client got {sent_mib:.1f} MiB out in {PUSH_SECONDS} s")
        self.assertLess(growth, MAX_GROWTH_MIB, f"pglane grew by {growth:.1f} MiB")
        # The COPY never finished: nothing of it is in the table.
        pgwire.poll(lambda: self.cluster.value("n0", "SELECT count(*) FROM pg_stat_activity "
                                                     "WHERE query LIKE 'COPY backpressure_t%'") == "0",
                    15, "the COPY's server session gone")
        self.assertEqual(self.cluster.value("n0", "SELECT count(*) FROM backpressure_t"), "0")

    def test_relayed_rw_port(self):
        p = Pglane(self.cluster).start()
        self.addCleanup(p.stop)
        p.wait_until(pgwire.all_routable, 15, "routable")
        self.copy_flood(p, p.rw_port)

    def test_auto_port_pooled(self):
        p = AutoPglane(self.cluster, users={pgwire.TRUST_ROLE: ""}, log_level="info", overrides={
            "auth": {"method": "trust"}, "pool": {"mode": "transaction", "size": 4}}).start()
        self.addCleanup(p.stop)
        p.wait_until(pgwire.all_routable, 15, "routable")
        self.copy_flood(p, p.auto_port)


if __name__ == "__main__":
    unittest.main()
