"""An hour of mixed load on one `bloodbank serve`, restarted (SIGTERM) every ten minutes.

Clients, each reconnecting when the server goes away:
  amqp     pika publisher with confirms (persistent, queue soak-amqp) and an acking consumer
  http     POST /events/theboard.meeting.created; a pika consumer on a durable queue bound to
           theboard.# counts what arrives
  ws       a /ws/events?pattern=theboard.%23 reader
  stomp    stomp.py sending to /queue/soak-stomp with receipts and subscribed to it
  speech   a spoken sentence streamed to /asr every 30 s (when a Whisper model is installed)

Every 10 s one row goes to soak.csv: the server's RSS, open file descriptors, data directory
size, p99 latency of HTTP publishes and of AMQP publish-to-delivery over the last 10 s, and the
running counts. At the end every AMQP publish that was confirmed and every HTTP publish that got
a 2xx must have been delivered (the numbers are printed and the exit status says), and
soak.png plots the samples.
"""

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import requests
import stomp
from websockets.sync.client import connect as ws_connect

MEETING = {
    "event_type": "theboard.meeting.created",
    "timestamp": "2024-01-15T10:30:00Z",
    "meeting_id": "550e8400-e29b-41d4-a716-446655440000",
    "topic": "soak",
    "strategy": "multi_agent",
    "max_rounds": 5,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `bloodbank serve` on fixed ports, so clients find it again after a restart."""

    def __init__(self, binary, data, models, log, config):
        self.binary, self.data, self.models, self.log, self.config = binary, data, models, log, config
        self.ports = {name: free_port() for name in ["amqp", "gateway", "speech", "management", "stomp", "stomp-ws"]}
        self.proc = None
        self.restarts = 0

    def start(self):
        ready = self.data.with_suffix(".ready")
        ready.unlink(missing_ok=True)
        args = [str(self.binary), "serve", "--config", str(self.config), "--data-dir", str(self.data), "--ready-file", str(ready)]
        for name, port in self.ports.items():
            args += [f"--{name}-listen", f"127.0.0.1:{port}"]
        if self.models:
            args += ["--models", str(self.models)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"bloodbank did not start, see {self.log}")
            time.sleep(0.01)

    def restart(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        if code != 0:
            sys.exit(f"bloodbank exited {code} on SIGTERM, see {self.log}")
        self.restarts += 1
        self.start()

    def sample(self):
        pid = self.proc.pid
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        disk = sum(f.stat().st_size for f in self.data.rglob("*") if f.is_file())
        log = sum(f.stat().st_size for f in (self.data / "messages").glob("*") if f.is_file())
        return rss, fds, disk, log


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.latencies = {"http": [], "amqp": []}
        self.confirmed, self.amqp_seen = set(), set()
        self.accepted, self.http_seen = set(), set()

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def latency(self, name, seconds):
        with self.lock:
            self.latencies[name].append(seconds)

    def window_p99(self, name):
        with self.lock:
            values, self.latencies[name] = sorted(self.latencies[name]), []
        return values[int(len(values) * 0.99)] * 1000 if values else ""


def forever(name, stop, stats, body):
    """Runs `body` until `stop`; a failure (the server restarting) waits and goes again."""
    while not stop.is_set():
        try:
            body()
        except Exception:  # noqa: BLE001 - any failure is a reconnect
            stats.count(f"{name}_reconnects")
            time.sleep(0.5)


def amqp_params(server):
    return pika.ConnectionParameters("127.0.0.1", server.ports["amqp"], heartbeat=30)


def amqp_publisher(server, stats, stop, rate):
    def body():
        conn = pika.BlockingConnection(amqp_params(server))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("soak-amqp", durable=True)
        while not stop.is_set():
            mid = uuid.uuid4().hex
            payload = json.dumps({"id": mid, "sent": time.time()}).encode()
            ch.basic_publish("", "soak-amqp", payload, pika.BasicProperties(delivery_mode=2, message_id=mid))
            with stats.lock:
                stats.confirmed.add(mid)
            stats.count("amqp_confirmed")
            time.sleep(1 / rate)
        conn.close()

    forever("amqp_publisher", stop, stats, body)


def amqp_consumer(server, stats, stop, queue, seen, latency):
    def body():
        conn = pika.BlockingConnection(amqp_params(server))
        ch = conn.channel()
        ch.basic_qos(prefetch_count=200)
        ch.queue_declare(queue, durable=True)
        if queue == "soak-http":
            ch.queue_bind(queue, "events", "theboard.#")
        for method, props, payload in ch.consume(queue, inactivity_timeout=1):
            if stop.is_set() and method is None:
                break
            if method is None:
                continue
            message = json.loads(payload)
            with stats.lock:
                seen.add(message["id"])
            if latency and "sent" in message:
                stats.latency("amqp", time.time() - message["sent"])
            ch.basic_ack(method.delivery_tag)
        conn.close()

    forever(f"{queue}_consumer", stop, stats, body)


def http_publisher(server, stats, stop, rate):
    session = requests.Session()
    url = f"http://127.0.0.1:{server.ports['gateway']}/events/theboard.meeting.created"
    while not stop.is_set():
        started = time.monotonic()
        try:
            # A new topic each time: the same body again would be replayed, not published.
            r = session.post(url, json={**MEETING, "topic": f"soak {uuid.uuid4().hex}"}, timeout=30)
            if r.status_code in (200, 201, 202):
                with stats.lock:
                    stats.accepted.add(r.json()["id"])
                stats.latency("http", time.monotonic() - started)
                stats.count("http_accepted")
            else:
                stats.count(f"http_{r.status_code}")
        except requests.RequestException:
            stats.count("http_reconnects")
            time.sleep(0.5)
        time.sleep(max(0, 1 / rate - (time.monotonic() - started)))


def ws_reader(server, stats, stop):
    def body():
        url = f"ws://127.0.0.1:{server.ports['gateway']}/ws/events?pattern=theboard.%23"
        with ws_connect(url, open_timeout=5) as ws:
            while not stop.is_set():
                try:
                    ws.recv(timeout=1)
                    stats.count("ws_received")
                except TimeoutError:
                    pass

    forever("ws", stop, stats, body)


class StompInbox(stomp.ConnectionListener):
    def __init__(self, stats):
        self.stats = stats
        self.gone = threading.Event()

    def on_message(self, frame):
        self.stats.count("stomp_received")

    def on_receipt(self, frame):
        self.stats.count("stomp_receipts")

    def on_disconnected(self):
        self.gone.set()


def stomp_client(server, stats, stop, rate):
    def body():
        conn = stomp.Connection12([("127.0.0.1", server.ports["stomp"])], heartbeats=(0, 0), reconnect_attempts_max=1)
        inbox = StompInbox(stats)
        conn.set_listener("inbox", inbox)
        conn.connect("guest", "guest", wait=True)
        conn.subscribe("/queue/soak-stomp", id="1", ack="auto")
        n = 0
        while not stop.is_set() and not inbox.gone.is_set():
            n += 1
            conn.send("/queue/soak-stomp", f"stomp {n}", receipt=f"r{n}")
            stats.count("stomp_sent")
            time.sleep(1 / rate)
        if conn.is_connected():
            conn.disconnect()
        if inbox.gone.is_set() and not stop.is_set():
            raise ConnectionError("STOMP connection lost")

    forever("stomp", stop, stats, body)


def speech_pcm():
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", "Turn off the lights in the living room."],
                         capture_output=True, check=True).stdout
    pcm = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-"],
                         input=wav, capture_output=True, check=True).stdout
    return pcm + bytes(16000 * 2 * 2)  # two seconds of silence end the utterance


def speech_client(server, stats, stop, pcm):
    def body():
        with ws_connect(f"ws://127.0.0.1:{server.ports['speech']}/asr", open_timeout=5) as ws:
            ws.recv(timeout=10)  # session_info
            for offset in range(0, len(pcm), 3200):
                ws.send(pcm[offset:offset + 3200])
                time.sleep(0.1)
            ws.send(json.dumps({"type": "stop"}))
            while True:
                message = json.loads(ws.recv(timeout=60))
                if message["type"] == "transcript" and message.get("is_final"):
                    stats.count("speech_finals")
                if message["type"] == "ready_to_stop":
                    break
        stop.wait(30)

    forever("speech", stop, stats, body)


def plot(rows, restarts, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [float(r["seconds"]) / 60 for r in rows]
    panels = [
        ("rss_mb", "RSS (MB)"),
        ("fds", "open file descriptors"),
        ("disk_mb", "disk (MB)"),
        ("http_p99_ms", "p99 latency (ms)"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 10), sharex=True)
    for ax, (key, label) in zip(axes, panels):
        values = [float(r[key]) if r[key] != "" else float("nan") for r in rows]
        labels = {"http_p99_ms": "HTTP publish", "disk_mb": "data directory"}
        ax.plot(minutes, values, label=labels.get(key))
        if key == "disk_mb":
            ax.plot(minutes, [float(r["log_mb"]) for r in rows], label="message log")
            ax.legend(loc="upper right")
        if key == "http_p99_ms":
            amqp = [float(r["amqp_p99_ms"]) if r["amqp_p99_ms"] != "" else float("nan") for r in rows]
            ax.plot(minutes, amqp, label="AMQP publish to delivery")
            ax.legend(loc="upper right")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        for at in restarts:
            ax.axvline(at / 60, color="grey", linestyle=":", linewidth=1)
    axes[-1].set_xlabel("minutes (dotted: SIGTERM and restart)")
    fig.suptitle("Bloodbank soak: mixed AMQP, HTTP, WebSocket, STOMP and speech load")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--out", required=True, help="folder for soak.csv, soak.png, the data dir and the log")
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--restart-every", type=float, default=10, help="minutes")
    parser.add_argument("--models", help="a models folder with Whisper installed (speech load)")
    parser.add_argument("--rate", type=float, default=100, help="AMQP publishes per second; HTTP and STOMP get a quarter each")
    parser.add_argument("--segment-bytes", type=int, default=8 << 20,
                        help="message log segment size: smaller than the default 64 MiB so that reclaiming shows within the hour")
    parser.add_argument("--keep-secs", type=int, default=300, help="correlation_ttl_secs and idempotency_window_secs")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / "bloodbank.toml"
    # Correlation links and idempotency keys are kept for 24 h by default; five minutes here
    # shows within the hour that the gateway's store stops growing once they expire.
    config.write_text(f"segment_bytes = {args.segment_bytes}\n"
                      f"correlation_ttl_secs = {args.keep_secs}\nidempotency_window_secs = {args.keep_secs}\n")
    server = Server(Path(args.binary), out / "data", args.models, out / "bloodbank.log", config)
    server.start()
    stats, stop = Stats(), threading.Event()
    clients = [
        threading.Thread(target=amqp_publisher, args=(server, stats, stop, args.rate)),
        threading.Thread(target=amqp_consumer, args=(server, stats, stop, "soak-amqp", stats.amqp_seen, True)),
        threading.Thread(target=amqp_consumer, args=(server, stats, stop, "soak-http", stats.http_seen, False)),
        threading.Thread(target=http_publisher, args=(server, stats, stop, args.rate / 4)),
        threading.Thread(target=ws_reader, args=(server, stats, stop)),
        threading.Thread(target=stomp_client, args=(server, stats, stop, args.rate / 4)),
    ]
    if args.models:
        clients.append(threading.Thread(target=speech_client, args=(server, stats, stop, speech_pcm())))
    # The queues exist before anything is published to them.
    conn = pika.BlockingConnection(amqp_params(server))
    ch = conn.channel()
    for queue in ["soak-amqp", "soak-http"]:
        ch.queue_declare(queue, durable=True)
    ch.queue_bind("soak-http", "events", "theboard.#")
    conn.close()
    for t in clients:
        t.start()

    started = time.monotonic()
    rows, restarts = [], []
    next_restart = args.restart_every * 60
    with open(out / "soak.csv", "w", newline="") as f:
        writer = None
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(10 - (elapsed % 10))
            elapsed = time.monotonic() - started
            if elapsed >= next_restart and elapsed < args.minutes * 60 - 5:
                server.restart()
                restarts.append(elapsed)
                next_restart += args.restart_every * 60
            rss, fds, disk, log = server.sample()
            with stats.lock:
                counts = dict(stats.counts)
            row = {
                "seconds": round(elapsed),
                "rss_mb": round(rss / 1e6, 1),
                "fds": fds,
                "disk_mb": round(disk / 1e6, 2),
                "log_mb": round(log / 1e6, 2),
                "http_p99_ms": round(p, 2) if (p := stats.window_p99("http")) != "" else "",
                "amqp_p99_ms": round(p, 2) if (p := stats.window_p99("amqp")) != "" else "",
                "restarts": server.restarts,
                **counts,
            }
            if writer is None:
                names = list(row) + sorted(k for k in ["amqp_confirmed", "http_accepted", "ws_received", "stomp_sent", "stomp_received", "speech_finals"] if k not in row)
                writer = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    stop.set()
    for t in clients:
        t.join(timeout=90)
    # What is still queued is delivered after the publishers stop.
    drain = {"stop": threading.Event()}
    drainers = [
        threading.Thread(target=amqp_consumer, args=(server, stats, drain["stop"], q, seen, False))
        for q, seen in [("soak-amqp", stats.amqp_seen), ("soak-http", stats.http_seen)]
    ]
    for t in drainers:
        t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with stats.lock:
            if stats.confirmed <= stats.amqp_seen and stats.accepted <= stats.http_seen:
                break
        time.sleep(1)
    drain["stop"].set()
    for t in drainers:
        t.join(timeout=30)
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=60)

    plot(rows, restarts, out / "soak.png")
    lost_amqp = stats.confirmed - stats.amqp_seen
    lost_http = stats.accepted - stats.http_seen
    first, last = rows[0], rows[-1]
    print(json.dumps({
        "minutes": args.minutes,
        "restarts": server.restarts,
        "amqp_confirmed": len(stats.confirmed),
        "amqp_lost": len(lost_amqp),
        "http_accepted": len(stats.accepted),
        "http_lost": len(lost_http),
        "counts": stats.counts,
        "rss_mb_first_last_max": [first["rss_mb"], last["rss_mb"], max(r["rss_mb"] for r in rows)],
        "fds_first_last_max": [first["fds"], last["fds"], max(r["fds"] for r in rows)],
        "disk_mb_first_last_max": [first["disk_mb"], last["disk_mb"], max(r["disk_mb"] for r in rows)],
        "log_mb_first_last_max": [first["log_mb"], last["log_mb"], max(r["log_mb"] for r in rows)],
    }, indent=2))
    if lost_amqp or lost_http:
        sys.exit(f"lost: {len(lost_amqp)} confirmed AMQP publishes, {len(lost_http)} accepted HTTP publishes")


if __name__ == "__main__":
    main()
