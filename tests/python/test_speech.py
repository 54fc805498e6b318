"""Speech to text end to end: espeak-ng speaks sentences with pauses between them; a client
streams the audio to /asr at real-time pace; it gets session_info, partials, one final per
sentence (word error rate at most 25%) and ready_to_stop; a consumer on the broker receives
one talkytonny.transcription.completed per sentence, exactly once."""

import asyncio
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import aio_pika
import pytest
import websockets

from conftest import ROOT, start_server, stop_server

MODELS = ROOT / "target" / "speech-data" / "models"
SENTENCES = [
    "Hello Tonny, what is the weather like today?",
    "Turn off the lights in the living room.",
]


def words(text):
    return [w for w in re.sub(r"[^a-z0-9 ]", "", text.lower()).split() if w]


def wer(reference, heard):
    r, h = words(reference), words(heard)
    row = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        previous, row[0] = row[0], i
        for j in range(1, len(h) + 1):
            previous, row[j] = row[j], min(previous + (r[i - 1] != h[j - 1]), row[j] + 1, row[j - 1] + 1)
    return row[len(h)] / len(r)


def speech_pcm(sentences, pause_seconds=1.5):
    """16 kHz mono s16le PCM of the sentences, with silence around and between them."""
    silence = b"\x00\x00" * int(16000 * pause_seconds)
    pcm = silence
    for sentence in sentences:
        wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", sentence], capture_output=True, check=True).stdout
        raw = subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-"],
                             input=wav, capture_output=True, check=True).stdout
        pcm += raw + silence
    return pcm


@pytest.fixture(scope="module")
def speaking_server():
    assert (MODELS / "whisper-tiny.en" / "model.json").exists(), "run scripts/test (it installs the model)"
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", "--models", str(MODELS))
        yield server
        stop_server(server)


def test_streamed_speech_becomes_transcripts_and_events(speaking_server):
    server = speaking_server
    pcm = speech_pcm(SENTENCES)

    async def run():
        connection = await aio_pika.connect_robust(server.url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("events")
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "talkytonny.#")
            messages = []
            async with websockets.connect(server.speech + "/asr") as ws:
                info = json.loads(await ws.recv())
                assert info["type"] == "session_info"

                async def receive():
                    async for frame in ws:
                        message = json.loads(frame)
                        messages.append(message)
                        if message["type"] == "ready_to_stop":
                            return

                receiver = asyncio.create_task(receive())
                step = 3200  # 100 ms
                for offset in range(0, len(pcm), step):
                    await ws.send(pcm[offset:offset + step])
                    await asyncio.sleep(0.1)
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(receiver, 60)

            kinds = [m["type"] for m in messages]
            assert kinds[-1] == "ready_to_stop", kinds
            assert "error" not in kinds, messages
            finals = [m for m in messages if m["type"] == "transcript" and m["is_final"]]
            assert len(finals) == len(SENTENCES), messages
            for said, final in zip(SENTENCES, finals):
                assert wer(said, final["text"]) <= 0.25, (said, final["text"])
                assert final["end"] > final["start"]
            assert [f["segment_id"] for f in finals] == sorted({f["segment_id"] for f in finals})

            events = []
            for _ in SENTENCES:
                message = await queue.get(timeout=10)
                await message.ack()
                events.append(json.loads(message.body))
            await asyncio.sleep(0.5)
            assert await queue.get(fail=False) is None, "one event per utterance"
            for final, envelope in zip(finals, events):
                assert envelope["event_type"] == "talkytonny.transcription.completed"
                assert envelope["correlation_id"] == info["session_id"]
                data = envelope["data"]
                assert (data["text"], data["segment_id"], data["session_id"]) == (final["text"], final["segment_id"], info["session_id"])

    asyncio.run(run())


def test_malformed_frames_get_error_messages(speaking_server):
    async def run():
        async with websockets.connect(speaking_server.speech + "/asr") as ws:
            json.loads(await ws.recv())
            await ws.send(b"\x01\x02\x03")
            assert "3 bytes" in json.loads(await ws.recv())["message"]
            await ws.send("{nope")
            assert "bad JSON" in json.loads(await ws.recv())["message"]
            await ws.send(json.dumps({"type": "config", "sample_rate": 4000}))
            assert "4000" in json.loads(await ws.recv())["message"]
            await ws.send(b"")
            assert json.loads(await ws.recv())["type"] == "ready_to_stop"

    asyncio.run(run())


def test_without_a_model_asr_says_how_to_install_it(bloodbank):
    async def run():
        async with websockets.connect(bloodbank.speech + "/asr") as ws:
            message = json.loads(await ws.recv())
            assert message["type"] == "error" and "install-model" in message["message"]
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 1011

    asyncio.run(run())


def test_the_page_shows_what_the_microphone_hears(speaking_server):
    """Headless Chromium with a fake microphone playing espeak-ng speech: the transcript
    appears on the page."""
    sentence = SENTENCES[1]
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "mic.wav"
        pcm = speech_pcm([sentence], pause_seconds=2.0)
        subprocess.run(["sox", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-", str(wav)], input=pcm, check=True)
        page = speaking_server.speech.replace("ws://", "http://") + "/"
        result = subprocess.run(["node", str(ROOT / "tests" / "browser" / "speech_page.mjs"), page, str(wav), "1"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        finals = json.loads(result.stdout)
        # Through Chromium's fake microphone the audio is resampled twice and cut into
        # chunks by the page as timing allows, so the words vary from run to run ("Turn off
        # my life, sim for living room", "Turn off the light, simf-living room" were both seen
        # on a busy CI machine). Recognition accuracy is held at 0.25 by the tests that send
        # PCM directly; this one holds the page: a transcript of that sentence shows up.
        heard = " ".join(finals)
        assert wer(sentence, heard) <= 0.5 and "living room" in heard.lower(), finals


def test_the_page_opened_from_another_machine_says_how_to_get_a_microphone(bloodbank):
    """Over plain HTTP on a host that is not localhost the browser has no microphone API: the
    page says what to do instead of pretending to listen."""
    port = bloodbank.speech.rsplit(":", 1)[1]
    result = subprocess.run(["node", str(ROOT / "tests" / "browser" / "speech_page_remote.mjs"), port],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout)
    assert shown["secure"] is False
    assert "localhost" in shown["notice"] and "ssh -L" in shown["notice"]
    assert "listening" not in shown["status"]
    assert shown["startDisabled"] is True


def test_finals_reach_the_webhook_and_metrics_count_them():
    import http.server
    import threading
    import urllib.request

    received = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    sentence = SENTENCES[0]
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", "--models", str(MODELS),
                              "--webhook-url", f"http://127.0.0.1:{hook.server_port}/webhook/transcripts")
        try:
            pcm = speech_pcm([sentence], pause_seconds=1.0)

            async def run():
                async with websockets.connect(server.speech + "/asr") as ws:
                    info = json.loads(await ws.recv())
                    for offset in range(0, len(pcm), 32000):
                        await ws.send(pcm[offset:offset + 32000])
                    await ws.send(b"")
                    async for frame in ws:
                        if json.loads(frame)["type"] == "ready_to_stop":
                            break
                    return info["session_id"]

            session_id = asyncio.run(run())
            deadline = time.monotonic() + 10
            while not received and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(received) == 1, received
            body = received[0]
            assert body["source"] == "voice_transcription" and body["session_id"] == session_id
            assert wer(sentence, body["text"]) <= 0.25 and body["timestamp"]
            metrics = urllib.request.urlopen(server.speech.replace("ws://", "http://") + "/metrics").read().decode()
            assert "bloodbank_speech_webhook_delivered_total 1" in metrics, metrics
            assert "bloodbank_speech_finals_total 1" in metrics, metrics
        finally:
            stop_server(server)
            hook.shutdown()


def test_audio_at_48khz_f32le_is_resampled(speaking_server):
    sentence = SENTENCES[1]
    pcm16 = speech_pcm([sentence], pause_seconds=1.0)
    f32 = subprocess.run(["sox", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-",
                          "-t", "raw", "-r", "48000", "-c", "1", "-b", "32", "-e", "floating-point", "-"],
                         input=pcm16, capture_output=True, check=True).stdout

    async def run():
        async with websockets.connect(speaking_server.speech + "/asr") as ws:
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "config", "sample_rate": 48000, "encoding": "f32le", "language": "en"}))
            for offset in range(0, len(f32), 192000):
                await ws.send(f32[offset:offset + 192000])
            await ws.send(json.dumps({"type": "stop"}))
            finals = []
            async for frame in ws:
                m = json.loads(frame)
                assert m["type"] != "error", m
                if m["type"] == "transcript" and m["is_final"]:
                    finals.append(m["text"])
                if m["type"] == "ready_to_stop":
                    break
            return finals

    finals = asyncio.run(run())
    assert len(finals) == 1 and wer(sentence, finals[0]) <= 0.25, finals


def test_several_sessions_at_once(speaking_server):
    async def one(sentence):
        pcm = speech_pcm([sentence], pause_seconds=1.0)
        async with websockets.connect(speaking_server.speech + "/asr") as ws:
            json.loads(await ws.recv())
            for offset in range(0, len(pcm), 3200):
                await ws.send(pcm[offset:offset + 3200])
                await asyncio.sleep(0.1)
            await ws.send(b"")
            finals = []
            async for frame in ws:
                m = json.loads(frame)
                if m["type"] == "transcript" and m["is_final"]:
                    finals.append(m["text"])
                if m["type"] == "ready_to_stop":
                    return finals

    async def run():
        return await asyncio.gather(*(one(s) for s in SENTENCES + SENTENCES[:1]))

    for sentence, finals in zip(SENTENCES + SENTENCES[:1], asyncio.run(run())):
        assert len(finals) == 1 and wer(sentence, finals[0]) <= 0.25, (sentence, finals)


def test_sessions_past_the_limit_are_told_to_come_back_and_big_messages_are_refused():
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", "--models", str(MODELS), "--speech-max-sessions", "1")
        try:
            async def run():
                async with websockets.connect(server.speech + "/asr") as first:
                    assert json.loads(await first.recv())["type"] == "session_info"
                    async with websockets.connect(server.speech + "/asr") as second:
                        message = json.loads(await second.recv())
                        assert message["type"] == "error" and "limit of 1" in message["message"]
                        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                            await second.recv()
                        assert closed.value.rcvd.code == 1013
                    # A message far above a second of audio closes the session (1009).
                    await first.send(b"\0" * (1024 * 1024))
                    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                        while True:
                            await first.recv()
                    # 1009, or no close frame when the unread rest of the message reset the socket.
                    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
                # The first session is over: a new one gets in (once the server has seen it end).
                for _ in range(50):
                    async with websockets.connect(server.speech + "/asr") as third:
                        if json.loads(await third.recv())["type"] == "session_info":
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("no session after the first one ended")

            asyncio.run(run())
        finally:
            stop_server(server)
