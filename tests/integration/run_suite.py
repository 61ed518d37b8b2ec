"""Runs the integration tests as `python3 -m unittest discover -v` would, under a watchdog:
when one test, or a class fixture between two tests, runs longer than PGLANE_TEST_TIMEOUT
seconds (default 600), every thread's stack is printed, with the tail of each pglane log
the tests wrote, the processes the tests started are killed, and the run exits with
status 3. A hang then fails with its place in the
output instead of running into CI's own time limit.

    /usr/bin/python3 tests/integration/run_suite.py [PATTERN]
"""

import faulthandler
import glob
import os
import signal
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = float(os.environ.get("PGLANE_TEST_TIMEOUT", "600"))


class Watchdog:
    """One timer, re-armed at every test boundary."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.timer = None
        self.what = "the first class fixture"

    def arm(self, what):
        self.disarm()
        self.what = what
        self.timer = threading.Timer(self.seconds, self.fire)
        self.timer.daemon = True
        self.timer.start()

    def disarm(self):
        if self.timer:
            self.timer.cancel()
            self.timer = None

    def fire(self):
        out = sys.__stderr__
        out.write(f"\n== watchdog: {self.what} ran longer than {self.seconds:.0f} s; stacks:\n")
        out.flush()
        faulthandler.dump_traceback(file=out, all_threads=True)
        logs = sorted(glob.glob(os.path.join(tempfile.gettempdir(), "pglane-test-*", "pglane.log")),
                      key=os.path.getmtime)[-3:]
        for path in logs:
            out.write(f"\n== last lines of {path}:\n")
            with open(path, errors="replace") as f:
                out.writelines(f.readlines()[-40:])
        out.flush()
        kill_children()
        os._exit(3)


def kill_children():
    """The pglane processes the tests started: they would outlive the run."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent == os.getpid():
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


WATCHDOG = Watchdog(TIMEOUT)


class WatchedResult(unittest.TextTestResult):
    def startTest(self, test):
        WATCHDOG.arm(test.id())
        super().startTest(test)

    def stopTest(self, test):
        super().stopTest(test)
        WATCHDOG.arm(f"the fixtures after {test.id()}")


def main():
    pattern = sys.argv[1] if len(sys.argv) > 1 else "test_*.py"
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern, top_level_dir=HERE)
    WATCHDOG.arm("the first class fixture")
    result = unittest.TextTestRunner(verbosity=2, resultclass=WatchedResult).run(suite)
    WATCHDOG.disarm()
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
