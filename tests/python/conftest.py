"""Starts a real `bloodbank serve` process on a free port for each test module."""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

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


def start_server(data_dir, *extra, amqp="127.0.0.1:0"):
    """Starts `bloodbank serve` on a free port (or `amqp`) with `data_dir`; returns a Server."""
    data_dir = Path(data_dir)
    ready = data_dir.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(BINARY), "serve", "--amqp-listen", amqp, "--gateway-listen", "127.0.0.1:0", "--speech-listen", "127.0.0.1:0", "--management-listen", "127.0.0.1:0", "--stomp-listen", "127.0.0.1:0", "--stomp-ws-listen", "127.0.0.1:0", "--schemas", str(ROOT / "schemas"),
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
    host, port = (listeners["amqp"] or ":0").rsplit(":", 1)
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


RABBITMQ_SERVER = "/usr/sbin/rabbitmq-server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def rabbitmq():
    """A real RabbitMQ 3.10 (Debian's rabbitmq-server) with the management, STOMP and
    Web-STOMP plugins on free loopback ports, for differential tests; started once."""
    if not os.path.exists(RABBITMQ_SERVER):
        pytest.fail("needs Debian's rabbitmq-server (scripts/test installs it)")
    tmp = tempfile.mkdtemp(prefix="rmq-diff-")
    ports = {name: free_port() for name in ("amqp", "management", "dist", "stomp", "stomp_ws")}
    with open(os.path.join(tmp, "rabbitmq.conf"), "w") as f:
        f.write(f"listeners.tcp.default = 127.0.0.1:{ports['amqp']}\n"
                f"management.tcp.port = {ports['management']}\nmanagement.tcp.ip = 127.0.0.1\n"
                f"stomp.listeners.tcp.1 = 127.0.0.1:{ports['stomp']}\n"
                f"web_stomp.tcp.port = {ports['stomp_ws']}\nweb_stomp.tcp.ip = 127.0.0.1\n")
    with open(os.path.join(tmp, "enabled_plugins"), "w") as f:
        f.write("[rabbitmq_management,rabbitmq_stomp,rabbitmq_web_stomp].\n")
    for sub in ("mnesia", "log"):
        os.makedirs(os.path.join(tmp, sub))
    # Debian's rabbitmq-server drops to the rabbitmq user when started as root.
    subprocess.run(["chmod", "-R", "755", tmp], check=False)
    subprocess.run(["chown", "-R", "rabbitmq:", tmp], check=False)
    env = {**os.environ,
           "RABBITMQ_NODENAME": f"bbdiff{os.getpid()}@localhost",
           "RABBITMQ_NODE_PORT": str(ports["amqp"]),
           "RABBITMQ_DIST_PORT": str(ports["dist"]),
           "RABBITMQ_MNESIA_BASE": os.path.join(tmp, "mnesia"),
           "RABBITMQ_LOG_BASE": os.path.join(tmp, "log"),
           "RABBITMQ_CONFIG_FILE": os.path.join(tmp, "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(tmp, "enabled_plugins")}
    proc = subprocess.Popen([RABBITMQ_SERVER], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{ports['management']}"
    deadline = time.monotonic() + 120
    while True:
        try:
            up = requests.get(base + "/api/overview", auth=("guest", "guest"), timeout=2).status_code == 200
            if up:
                socket.create_connection(("127.0.0.1", ports["stomp"]), timeout=2).close()
                break
        except (requests.RequestException, OSError):
            pass
        assert time.monotonic() < deadline, "RabbitMQ did not come up"
        time.sleep(0.5)
    yield {"base": base, **ports}
    subprocess.run(["rabbitmqctl", "-q", "stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.kill()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)
