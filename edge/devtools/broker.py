"""Start a local mosquitto broker on a free loopback port.

Used by ``iad-edge demo`` (so the demo needs no system service) and by the test
suite's ``mosquitto_broker`` fixture. The broker is a plain child process whose
PID we keep, so it can be stopped and started again **on the same port**: that
is how tests simulate a broker outage that clients recover from.

Persistence is off by default: a restarted broker has no memory of earlier
sessions, exactly like a broker that crashed, which is the worst case the
real-time lane must survive. Set ``persistence=True`` (before ``start``/``restart``)
to model a production broker that keeps persistent subscriber sessions (a PLC
connected with clean_start=False and a session expiry) across a clean restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from edge.errors import IadError
from edge.processes import terminate

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


class BrokerError(IadError):
    """The local broker could not be found or started."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (``$IAD_MOSQUITTO``, PATH, then the usual sbin folders) or None."""
    env = os.environ.get("IAD_MOSQUITTO")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in MOSQUITTO_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """A mosquitto child process listening on ``host:port`` (loopback, anonymous, no persistence).

    ``start()`` waits until the port accepts connections; ``stop()`` terminates
    the process (SIGTERM, then SIGKILL); ``restart()`` starts it again on the
    same port. Use as a context manager to be sure the process is gone.
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", binary: str | None = None,
                 workdir: Path | None = None, persistence: bool = False):
        self.binary = binary or find_mosquitto()
        if not self.binary:
            raise BrokerError(
                "mosquitto not found (looked at $IAD_MOSQUITTO, PATH and /usr/sbin); "
                "install it with 'sudo apt-get install -y mosquitto' or pass --mqtt-host/--mqtt-port of a running broker"
            )
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="iad-mosquitto-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "mosquitto.log"
        self.persistence = persistence
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _write_config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            f"persistence {'true' if self.persistence else 'false'}\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 10000\n"
            # mosquitto started as root drops to user 'mosquitto', which cannot write our
            # private temp folder (persistence file); stay the user that started it.
            + ("user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
        )
        return conf

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return self
        conf = self._write_config()
        self._log_file = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            [self.binary, "-c", str(conf)], stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-800:]
                self._proc = None
                raise BrokerError(f"mosquitto exited at start on {self.host}:{self.port}: {tail.strip()}")
            if port_open(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not open {self.host}:{self.port} within {timeout:.0f} s (log: {self.log_path})")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, SIGKILL after ``timeout``); a no-op when it is not running."""
        proc, self._proc = self._proc, None
        terminate(proc, timeout)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def kill(self) -> None:
        """Kill the broker with SIGKILL (a crash: no clean disconnects are sent)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self.stop()

    def restart(self, timeout: float = 10.0) -> MosquittoBroker:
        """Stop (if running) and start again on the same port."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker and remove its temporary folder."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MosquittoBroker({self.host}:{self.port}, running={self.running})"
