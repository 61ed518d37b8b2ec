"""The operator's view: packaging/pglane.service passes `systemd-analyze verify` and runs
only what the binary accepts on the config shape it ships (packaging/pglane.json), with the
hardening, restart policy and descriptor limit a 10,000-client service needs and no reload
it cannot do; `pglane --help` is a manual whose options, subcommands, examples, signals and
exit statuses are what the binary does."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import unittest

import pgwire
from cluster import REPO_ROOT, LocalCluster
from pglane import BINARY, Pglane

UNIT = REPO_ROOT / "packaging" / "pglane.service"
EXAMPLE_CONFIG = REPO_ROOT / "packaging" / "pglane.json"
INSTALLED_BINARY = "/usr/local/bin/pglane"      # cmake --install's default prefix
INSTALLED_CONFIG = "/etc/pglane/pglane.json"
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SUBCOMMANDS", "SIGNALS", "FILES", "EXIT STATUS",
            "EXAMPLES")


def unit_directives():
    """{(section, key): [values]} of the unit file."""
    directives, section = {}, None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.setdefault((section, key.strip()), []).append(value.strip())
    return directives


def local_command(command_line):
    """A unit or manual command line with the installed paths replaced by this build's."""
    args = shlex.split(command_line)
    return [BINARY if a in (INSTALLED_BINARY, "pglane") else str(EXAMPLE_CONFIG) if a == INSTALLED_CONFIG else a
            for a in args]


def manual():
    result = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    return result.stdout


def manual_section(name):
    text = manual()
    start = text.index(f"\n{name}\n") + len(name) + 2
    following = [text.index(f"\n{s}\n") for s in SECTIONS if text.find(f"\n{s}\n") > start - len(name) - 2
                 and s != name]
    return text[start:min(following)] if following else text[start:]


class SystemdUnit(unittest.TestCase):

    def test_the_unit_verifies_offline(self):
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            self.skipTest("systemd-analyze is not installed")
        with tempfile.TemporaryDirectory() as directory:
            local = os.path.join(directory, "pglane.service")
            with open(local, "w") as f:
                f.write(UNIT.read_text().replace(INSTALLED_BINARY, BINARY).replace(INSTALLED_CONFIG, str(EXAMPLE_CONFIG)))
            result = subprocess.run([analyze, "verify", local], capture_output=True, text=True, timeout=60)
            # Unknown keys and bad values are only warnings: any output is a failure here.
            self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))
            security = subprocess.run([analyze, "security", "--offline=yes", local], capture_output=True,
                                      text=True, timeout=60)
            level = re.search(r"Overall exposure level for pglane.service: ([\d.]+)", security.stdout)
            self.assertIsNotNone(level, security.stdout + security.stderr)
            self.assertLessEqual(float(level.group(1)), 2.0, security.stdout)

    def test_the_unit_runs_commands_the_binary_accepts_on_the_shipped_config(self):
        directives = unit_directives()
        start = directives[("Service", "ExecStart")]
        self.assertEqual(len(start), 1)
        self.assertEqual(shlex.split(start[0]), [INSTALLED_BINARY, "--config", INSTALLED_CONFIG])
        # ExecStartPre validates the config: it succeeds on the shipped shape...
        for pre in directives[("Service", "ExecStartPre")]:
            result = subprocess.run(local_command(pre), capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertIn("is valid", result.stdout)
        # ...ExecStart's own arguments name a valid config...
        result = subprocess.run(local_command(start[0]) + ["--check-config"], capture_output=True, text=True,
                                timeout=10)
        self.assertEqual(result.returncode, 0, result.stderr)
        # ...and a broken config fails the start with the offending key.
        with tempfile.NamedTemporaryFile("w", suffix=".json") as broken:
            broken.write(EXAMPLE_CONFIG.read_text().replace('"max_client_connections"', '"max_clients"'))
            broken.flush()
            pre = [a if a != str(EXAMPLE_CONFIG) else broken.name
                   for a in local_command(directives[("Service", "ExecStartPre")][0])]
            result = subprocess.run(pre, capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 1)
            self.assertIn('config key "limits.max_clients": unknown key', result.stderr)

    def test_the_unit_restarts_on_failure_is_hardened_and_has_room_for_10000_clients(self):
        d = unit_directives()
        service = lambda key: d.get(("Service", key), [None])[-1]  # noqa: E731
        self.assertEqual(service("Restart"), "on-failure")
        self.assertEqual(service("KillSignal"), "SIGTERM")
        # systemd must not SIGKILL a drain that is still within shutdown_timeout_ms.
        drain_ms = json.loads(EXAMPLE_CONFIG.read_text()).get("shutdown_timeout_ms", 30_000)
        self.assertGreater(int(service("TimeoutStopSec")) * 1000, drain_ms)
        # Each client holds its socket plus a server connection per node it uses (up to 3).
        self.assertGreaterEqual(int(service("LimitNOFILE")), 10_000 * 4 + 1_000)
        for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                           "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
                           "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "MemoryDenyWriteExecute": "yes",
                           "User": "pglane"}.items():
            self.assertEqual(service(key), value, key)
        # The example's socket directory is the one systemd makes for the service.
        listen = json.loads(EXAMPLE_CONFIG.read_text())["listen"]
        self.assertEqual(listen["unix_socket_dir"], "/run/" + service("RuntimeDirectory"))
        # systemctl reload is pglane's SIGHUP.
        self.assertEqual(service("ExecReload"), "/bin/kill -HUP $MAINPID")
        self.assertEqual(d[("Install", "WantedBy")], ["multi-user.target"])


class Manual(unittest.TestCase):

    def test_the_manual_has_every_section_in_order(self):
        text = manual()
        positions = [text.find(("" if s == "NAME" else "\n") + s + "\n") for s in SECTIONS]
        self.assertTrue(all(p >= 0 for p in positions), dict(zip(SECTIONS, positions)))
        self.assertEqual(positions, sorted(positions))
        self.assertTrue(text.startswith("NAME\n    pglane - "))

    def test_every_option_in_the_manual_is_accepted(self):
        options = set(re.findall(r"^    (-[-\w]+)", manual_section("OPTIONS"), re.M))
        options |= set(re.findall(r", (-[-\w]+)", manual_section("OPTIONS")))
        self.assertEqual(options, {"--config", "--check-config", "--version", "--help", "-h"})
        for option in ("--version", "--help", "-h"):
            result = subprocess.run([BINARY, option], capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 0, option)
        for form in (["--config", str(EXAMPLE_CONFIG)], [f"--config={EXAMPLE_CONFIG}"]):
            result = subprocess.run([BINARY, "--check-config", *form], capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 0, result.stderr)
        status_options = set(re.findall(r"(--[a-z-]+)", manual_section("SUBCOMMANDS")))
        self.assertEqual(status_options, {"--url", "--config", "--watch"})
        usage = subprocess.run([BINARY, "status", "--help"], capture_output=True, text=True, timeout=10).stdout
        for option in status_options:
            self.assertIn(option, usage)

    def test_the_exit_statuses_are_the_binary_s(self):
        self.assertIn("2   bad command line", manual_section("EXIT STATUS"))
        self.assertEqual(subprocess.run([BINARY, "--bogus"], capture_output=True, timeout=10).returncode, 2)
        self.assertEqual(subprocess.run([BINARY], capture_output=True, timeout=10).returncode, 2)
        self.assertEqual(subprocess.run([BINARY, "status", "--bogus"], capture_output=True, timeout=10).returncode, 2)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as broken:
            broken.write("{}")
            broken.flush()
            self.assertEqual(subprocess.run([BINARY, "--config", broken.name], capture_output=True,
                                            timeout=10).returncode, 1)
        unreachable = subprocess.run([BINARY, "status", "--url", "127.0.0.1:1"], capture_output=True, timeout=10)
        self.assertEqual(unreachable.returncode, 1)

    def test_the_examples_run(self):
        for line in manual_section("EXAMPLES").strip().splitlines():
            command = line.strip()
            if not command.startswith("pglane --check-config"):
                continue   # the others need a running pglane or cluster: the signal test runs one
            result = subprocess.run(local_command(command), capture_output=True, text=True, timeout=10)
            self.assertEqual(result.returncode, 0, f"{command}: {result.stderr}")
        self.assertIn("pglane status --url 127.0.0.1:9187", manual_section("EXAMPLES"))


class Signals(unittest.TestCase):
    """What SIGNALS says, against a running pglane."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = LocalCluster.from_env()
        cls.started_here = cls.cluster.ensure_up()

    @classmethod
    def tearDownClass(cls):
        if cls.started_here and not os.environ.get("PGLANE_TEST_KEEP_CLUSTER"):
            cls.cluster.down()

    def running_pglane(self):
        pglane = Pglane(self.cluster).start()
        self.addCleanup(pglane.stop)
        pglane.wait_until(lambda s: s.get("primary") == "n0", 15, "a primary")
        return pglane

    def test_sigterm_and_sigint_close_idle_sessions_with_57P01_and_exit_0(self):
        self.assertRegex(manual_section("SIGNALS"), r"SIGTERM\n +Drain: .* FATAL 57P01")
        self.assertRegex(manual_section("SIGNALS"), r"SIGINT\n +The same at once")
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                pgwire.ensure_roles(self.cluster)
                pglane = self.running_pglane()
                session = pgwire.trust_session(pglane.rw_port)
                self.addCleanup(session.close)
                # The status command of the EXAMPLES section, against this pglane.
                status = subprocess.run([BINARY, "status", "--url", f"127.0.0.1:{pglane.metrics_port}"],
                                        capture_output=True, text=True, timeout=10)
                self.assertEqual(status.returncode, 0, status.stderr)
                pglane.process.send_signal(sig)
                fields = pgwire.expect_error_then_close(session)
                self.assertEqual((fields.get("S"), fields.get("C"), fields.get("M")),
                                 ("FATAL", "57P01", "pglane is shutting down"))
                self.assertEqual(pglane.process.wait(timeout=10), 0)

    def test_sighup_reloads_and_pglane_goes_on(self):
        # What SIGHUP applies is tested in test_reload; here: the manual says it, and a
        # session open across it is untouched.
        self.assertRegex(manual_section("SIGNALS"), r"SIGHUP\n +Reload: ")
        pgwire.ensure_roles(self.cluster)
        pglane = self.running_pglane()
        session = pgwire.trust_session(pglane.rw_port)
        self.addCleanup(session.close)
        pglane.process.send_signal(signal.SIGHUP)
        pgwire.poll(lambda: "config_reloaded" in pglane.log_text(), 10, "config_reloaded in the log")
        self.assertIsNone(pglane.process.poll())
        self.assertEqual(pgwire.simple_query(session, "SELECT 1"), b"I")


if __name__ == "__main__":
    unittest.main()
