"""The local HA cluster (compose/local-cluster) has the shape pglane relies on: n0 primary,
n1/n2 streaming standbys in an ANY 1 quorum with slots, archiving, SCRAM replication; a
second cluster runs beside it; `down` leaves nothing behind."""

import os
import pathlib
import subprocess
import tempfile
import time
import unittest

from cluster import LAUNCHER, LocalCluster, ClusterError

CLUSTER = None
STARTED_HERE = False


def setUpModule():
    global CLUSTER, STARTED_HERE
    CLUSTER = LocalCluster.from_env()
    STARTED_HERE = CLUSTER.ensure_up()


def tearDownModule():
    if STARTED_HERE and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
        CLUSTER.down()


def unique_name(prefix):
    return f"{prefix}_{os.getpid()}_{time.monotonic_ns()}"


def processes_under(directory):
    """PIDs whose command line or working directory mentions `directory`."""
    directory = str(directory)
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if directory + "/" in cmdline or cwd == directory or cwd.startswith(directory + "/"):
            found.append(int(proc.name))
    return found


class ClusterShape(unittest.TestCase):
    """What `up` promises about the cluster the runner points at."""

    def test_n0_is_the_primary_and_n1_n2_are_standbys(self):
        self.assertEqual(CLUSTER.value("n0", "SELECT pg_is_in_recovery()"), "f")
        self.assertEqual(CLUSTER.value("n1", "SELECT pg_is_in_recovery()"), "t")
        self.assertEqual(CLUSTER.value("n2", "SELECT pg_is_in_recovery()"), "t")
        roles = {node: row["role"] for node, row in CLUSTER.status().items()}
        self.assertEqual(roles, {"n0": "primary", "n1": "standby", "n2": "standby"})

    def test_both_standbys_stream_to_the_primary_in_the_quorum(self):
        rows = CLUSTER.sql("n0", "SELECT application_name, state, sync_state "
                                 "FROM pg_stat_replication ORDER BY application_name")
        self.assertEqual(rows, [["n1", "streaming", "quorum"], ["n2", "streaming", "quorum"]])

    def test_each_standby_has_an_active_physical_slot(self):
        rows = CLUSTER.sql("n0", "SELECT slot_name, slot_type, active FROM pg_replication_slots "
                                 "ORDER BY slot_name")
        self.assertEqual(rows, [["n1", "physical", "t"], ["n2", "physical", "t"]])
        for node in ("n1", "n2"):
            self.assertEqual(CLUSTER.sql(node, "SELECT slot_name, status FROM pg_stat_wal_receiver"),
                             [[node, "streaming"]])

    def test_commits_wait_for_any_one_of_the_two_standbys(self):
        self.assertEqual(CLUSTER.value("n0", "SHOW synchronous_standby_names"), "ANY 1 (n1, n2)")
        self.assertEqual(CLUSTER.value("n0", "SHOW synchronous_commit"), "on")

    def test_a_write_on_the_primary_becomes_visible_on_both_standbys(self):
        table = unique_name("replicated")
        CLUSTER.sql("n0", f"CREATE TABLE {table} (token text); "
                          f"INSERT INTO {table} VALUES ('{table}')")
        try:
            for node in ("n1", "n2"):
                seen = CLUSTER.wait_for(
                    lambda: CLUSTER.sql(node, f"SELECT token FROM {table}")
                    if CLUSTER.value(node, f"SELECT to_regclass('{table}') IS NOT NULL") == "t"
                    else None,
                    f"{table} on {node}", timeout=15)
                self.assertEqual(seen, [[table]])
        finally:
            CLUSTER.sql("n0", f"DROP TABLE {table}")

    def test_a_switched_wal_segment_lands_in_the_archive(self):
        table = unique_name("archived")
        # Some WAL since the last switch, so pg_switch_wal really completes a segment.
        CLUSTER.sql("n0", f"CREATE TABLE {table} (x int); DROP TABLE {table}")
        segment = CLUSTER.value("n0", "SELECT pg_walfile_name(pg_switch_wal())")
        archived = CLUSTER.archive_dir / segment
        CLUSTER.wait_for(archived.is_file, f"{archived}", timeout=30)
        self.assertGreater(archived.stat().st_size, 0)
        self.assertEqual(CLUSTER.value("n0", "SELECT failed_count FROM pg_stat_archiver"), "0")

    def test_standbys_carry_standby_signal_and_their_own_recovery_settings(self):
        for node in ("n1", "n2"):
            self.assertTrue((CLUSTER.data_dir(node) / "standby.signal").is_file())
            conninfo = CLUSTER.value(node, "SHOW primary_conninfo")
            self.assertIn(f"application_name={node}", conninfo)
            self.assertIn("user=replicator", conninfo)
            self.assertEqual(CLUSTER.value(node, "SHOW primary_slot_name"), node)
            self.assertIn(str(CLUSTER.archive_dir), CLUSTER.value(node, "SHOW restore_command"))
        self.assertFalse((CLUSTER.data_dir("n0") / "standby.signal").exists())

    def test_archive_command_never_overwrites_an_archived_file(self):
        command = CLUSTER.value("n0", "SHOW archive_command")
        self.assertIn(f"test ! -f {CLUSTER.archive_dir}/%f", command)
        self.assertEqual(CLUSTER.value("n0", "SHOW archive_mode"), "on")

    def test_the_replication_role_authenticates_with_scram(self):
        self.assertEqual(
            CLUSTER.sql("n0", "SELECT rolreplication, left(rolpassword, 14) FROM pg_authid "
                              "WHERE rolname = 'replicator'"),
            [["t", "SCRAM-SHA-256$"]])
        self.assertEqual(
            CLUSTER.sql("n0", "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host' "
                              "AND database = '{replication}' AND user_name = '{replicator}'"),
            [["scram-sha-256"]])
        self.assertEqual(self.replication_connection(CLUSTER.replication_password).returncode, 0)
        refused = self.replication_connection("not-the-password")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("password authentication failed", refused.stderr)

    def test_the_superuser_password_is_required_over_tcp(self):
        with self.assertRaisesRegex(ClusterError, "password authentication failed"):
            CLUSTER.sql("n0", "SELECT 1", password="not-the-password")

    def replication_connection(self, password):
        conninfo = (f"host=127.0.0.1 port={CLUSTER.port('n0')} user=replicator "
                    "dbname=replication replication=true")
        return subprocess.run([str(CLUSTER.pg_bin / "psql"), "-X", "-w", "-At", conninfo,
                               "-c", "IDENTIFY_SYSTEM"],
                              env=dict(os.environ, PGPASSWORD=password),
                              capture_output=True, text=True, timeout=30, check=False)


class SecondClusterBesideTheFirst(unittest.TestCase):
    """Another base port and directory: a cluster of its own, replay paused per standby."""

    @classmethod
    def setUpClass(cls):
        base_port = CLUSTER.base_port + 100
        cls.side = LocalCluster(base_port, pathlib.Path(tempfile.gettempdir())
                                / f"pglane-side-{base_port}-{os.getpid()}")
        cls.side.up()

    @classmethod
    def tearDownClass(cls):
        cls.side.down()

    def test_it_is_a_separate_cluster_while_the_first_keeps_running(self):
        identifier = "SELECT system_identifier FROM pg_control_system()"
        self.assertNotEqual(self.side.value("n0", identifier), CLUSTER.value("n0", identifier))
        self.assertEqual(self.side.value("n1", identifier), self.side.value("n0", identifier))
        self.assertEqual(self.side.port("n0"), CLUSTER.port("n0") + 100)
        self.assertTrue(CLUSTER.is_up())
        self.assertTrue(self.side.is_up())

    def test_a_paused_standby_holds_back_writes_until_resumed(self):
        table = unique_name("paused")
        self.side.sql("n0", f"CREATE TABLE {table} (x int)")
        exists = f"SELECT to_regclass('{table}') IS NOT NULL"
        for node in ("n1", "n2"):
            self.side.wait_for(lambda: self.side.value(node, exists) == "t", f"{table} on {node}")

        count = f"SELECT count(*) FROM {table}"
        self.side.pause_replay("n1")
        try:
            self.assertEqual(self.side.value("n1", "SELECT pg_is_wal_replay_paused()"), "t")
            self.assertEqual(self.side.value("n2", "SELECT pg_is_wal_replay_paused()"), "f")
            # ANY 1 needs a flush, not a replay: the commit returns although n1 is paused.
            self.side.sql("n0", f"INSERT INTO {table} VALUES (1)")
            self.side.wait_for(lambda: self.side.value("n2", count) == "1", "the row on n2")
            self.assertEqual(self.side.value("n1", count), "0")
        finally:
            self.side.resume_replay("n1")
        self.assertEqual(self.side.value("n1", "SELECT pg_is_wal_replay_paused()"), "f")
        self.side.wait_for(lambda: self.side.value("n1", count) == "1", "the row on n1")


class DownLeavesNothingBehind(unittest.TestCase):
    """`down` removes every process and the directory, whatever state the cluster is in."""

    def make_cluster(self, offset):
        base_port = CLUSTER.base_port + offset
        directory = pathlib.Path(tempfile.gettempdir()) / f"pglane-down-{base_port}-{os.getpid()}"
        cluster = LocalCluster(base_port, directory)
        self.addCleanup(cluster.down)
        return cluster

    def assert_gone(self, cluster):
        self.assertEqual(processes_under(cluster.cluster_dir), [])
        self.assertFalse(cluster.cluster_dir.exists())
        self.assertFalse(any(row["running"] for row in cluster.status().values()))

    def test_down_after_a_promotion_and_a_crashed_primary(self):
        cluster = self.make_cluster(200)
        cluster.up()
        cluster.stop("n0", "immediate")
        cluster.promote("n1")
        self.assertEqual(cluster.value("n1", "SELECT pg_is_in_recovery()"), "f")
        # Standbys do not inherit the primary's quorum: with n0 gone and n2 still following
        # it, a commit on the promoted n1 must not wait for a synchronous standby.
        self.assertEqual(cluster.value("n1", "SHOW synchronous_standby_names"), "")
        cluster.sql("n1", "CREATE TABLE after_promotion (x int); "
                          "INSERT INTO after_promotion VALUES (1)", timeout=15)
        self.assertNotEqual(processes_under(cluster.cluster_dir), [])
        cluster.down()
        self.assert_gone(cluster)

    def test_down_after_an_interrupted_up(self):
        cluster = self.make_cluster(300)
        up = subprocess.Popen([str(LAUNCHER), "up"], env=cluster.launcher_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n0_socket = cluster.cluster_dir / "sockets" / "n0" / f".s.PGSQL.{cluster.port('n0')}"
        try:
            # Kill the launcher alone once the primary listens: its children (primary-init,
            # pg_basebackup, postmasters) are left running, as after a crashed terminal.
            cluster.wait_for(lambda: n0_socket.exists() or up.poll() is not None,
                             "n0 to listen", timeout=60, interval=0.02)
        finally:
            up.kill()
            up.wait(timeout=10)
        self.assertTrue(n0_socket.exists())
        self.assertNotEqual(processes_under(cluster.cluster_dir), [])
        cluster.down()
        self.assert_gone(cluster)

if __name__ == "__main__":
    unittest.main()
