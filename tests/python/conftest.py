"""Starts a real `bloodbank serve` process on a free port for each test module."""

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("BLOODBANK_BIN", ROOT / "target" / "debug" / "bloodbank"))


class Server:
    def __init__(self, proc, host, port, data_dir, http):
        self.proc = proc
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.http = http  # the gateway's base URL

    @property
    def url(self):
        return f"amqp://guest:guest@{self.host}:{self.port}/%2F"


def start_server(data_dir, *extra):
    """Starts `bloodbank serve` on a free port with `data_dir`; returns a Server."""
    data_dir = Path(data_dir)
    ready = data_dir.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--amqp-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--speech-listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0", "--stomp-listen", "127.0.0.1:0", "--stomp-ws-listen", "127.0.0.1:0", "--schemas", str(ROOT / "schemas"),
         "--data-dir", str(data_dir), "--ready-file", str(ready), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 10
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"bloodbank did not start: {proc.stderr.read()}")
        time.sleep(0.01)
    listeners = json.loads(ready.read_text())
    host, port = listeners["amqp"].rsplit(":", 1)
    server = Server(proc, host, int(port), data_dir, f"http://{listeners['http']}")
    server.speech = f"ws://{listeners['speech']}"
    server.management = f"http://{listeners['management']}" if listeners.get("management") else None
    server.stomp = listeners.get("stomp")
    server.stomp_ws = listeners.get("stomp_ws")
    return server


def stop_server(server):
    """SIGTERM; the process must exit 0 after printing where it listened."""
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0, server.proc.stderr.read()
    first_line = server.proc.stdout.readline().strip()
    assert first_line == f"listening amqp {server.host}:{server.port}"


@pytest.fixture(scope="module")
def bloodbank():
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data")
        yield server
        stop_server(server)
