"""Speech latency and speed against a running `bloodbank serve` with the model installed.

For each sentence (espeak-ng, 16 kHz), streams silence + speech + silence to /asr at real-time
pace in 20 ms frames and measures, from the moment the last speech sample was sent:
- the final transcript's arrival over the WebSocket,
- the talkytonny.transcription.completed event's arrival at an AMQP consumer,
and the real-time factor (inference time / audio duration, from the event's timing).
The end-of-utterance rule (a stretch of quiet) is part of the latency, as users feel it.

    python benches/speech/latency.py --speech ws://127.0.0.1:8888 --amqp amqp://guest:guest@127.0.0.1:5672/%2F
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import time

import aio_pika
import websockets

SENTENCES = [
    "Hello Tonny, what is the weather like today?",
    "Turn off the lights in the living room.",
    "Please schedule a meeting with the design team for tomorrow morning.",
    "Send the meeting notes to everyone on the team.",
]
FRAME = 640  # bytes: 20 ms of s16le at 16 kHz


def pcm(sentence):
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "--stdout", sentence], capture_output=True, check=True).stdout
    return subprocess.run(["sox", "-t", "wav", "-", "-t", "raw", "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", "-"],
                          input=wav, capture_output=True, check=True).stdout


async def one(args, sentence, events):
    speech = pcm(sentence)
    lead, tail = b"\x00\x00" * 16000, b"\x00\x00" * 32000
    async with websockets.connect(args.speech + "/asr") as ws:
        await ws.recv()  # session_info
        final = asyncio.get_running_loop().create_future()

        async def receive():
            async for frame in ws:
                m = json.loads(frame)
                if m["type"] == "transcript" and m["is_final"] and not final.done():
                    final.set_result((time.monotonic(), m))
                if m["type"] == "ready_to_stop":
                    return

        receiver = asyncio.create_task(receive())
        start = time.monotonic()
        sent = 0
        speech_end = None
        for part, is_speech in ((lead, False), (speech, True), (tail, False)):
            for offset in range(0, len(part), FRAME):
                await ws.send(part[offset:offset + FRAME])
                sent += FRAME
                # Real-time pace: never ahead of the audio clock.
                await asyncio.sleep(max(0.0, start + sent / 32000 - time.monotonic()))
            if is_speech:
                speech_end = time.monotonic()
        t_final, message = await asyncio.wait_for(final, 30)
        t_event, body = await asyncio.wait_for(events.get(), 10)
        await ws.send(b"")
        await asyncio.wait_for(receiver, 30)
    timing = json.loads(body)["data"]["timing"]
    duration = timing["end_ms"] - timing["start_ms"]
    return {
        "final_ms": (t_final - speech_end) * 1000,
        "event_ms": (t_event - speech_end) * 1000,
        "rtf": timing["processing_ms"] / duration,
        "text": message["text"],
    }


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--speech", default="ws://127.0.0.1:8888")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    connection = await aio_pika.connect_robust(args.amqp)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(await channel.get_exchange("events"), "talkytonny.transcription.completed")
        # Events are timed as they arrive, while the audio is still streaming.
        events = asyncio.Queue()

        async def consume(message):
            await events.put((time.monotonic(), message.body))
            await message.ack()

        await queue.consume(consume)
        results = [await one(args, s, events) for _ in range(args.rounds) for s in SENTENCES]
    print("| utterances | final after speech ends, p50 / max ms | event at consumer, p50 / max ms | real-time factor, p50 / max |")
    print("|---:|---:|---:|---:|")
    f, e, r = ([x[k] for x in results] for k in ("final_ms", "event_ms", "rtf"))
    print(f"| {len(results)} | {statistics.median(f):.0f} / {max(f):.0f} | {statistics.median(e):.0f} / {max(e):.0f} | "
          f"{statistics.median(r):.3f} / {max(r):.3f} |")
    for x in results[: len(SENTENCES)]:
        print(f"  heard: {x['text']}")


if __name__ == "__main__":
    asyncio.run(main())
