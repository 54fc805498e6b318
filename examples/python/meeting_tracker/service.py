"""theboard meeting tracker: a 33GOD consumer built on the generated Python kit.

It follows meetings on the bus: `theboard.meeting.created` starts tracking one,
`theboard.meeting.round_completed` counts its rounds and `theboard.meeting.completed` closes
it. A round of a meeting it has not seen created fails (the creation may still be on its way):
the kit retries it with backoff and, when the meeting never appears, dead-letters it. Rounds
are counted by (round, agent), so a redelivered event is not counted twice.

Each state change is printed as one JSON line; `--health-port` serves the kit's health report.

    bloodbank schemas generate --lang python --out events
    python service.py --url amqp://guest:guest@localhost:5672/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from events import consumer
from events.theboard import MeetingCompletedV1, MeetingCreatedV1, MeetingRoundCompletedV1


def emit(**fields: object) -> None:
    print(json.dumps(fields, default=str), flush=True)


def build(args: argparse.Namespace) -> consumer.Service:
    service = consumer.Service(
        "meeting-tracker",
        args.url,
        max_attempts=args.max_attempts,
        backoff_ms=tuple(args.backoff_ms),
    )
    meetings: dict[str, dict[str, object]] = {}

    @service.handles("theboard.meeting.created")
    async def created(event: consumer.Envelope[MeetingCreatedV1]) -> None:
        m = event.data
        meetings.setdefault(str(m.meeting_id), {"topic": m.topic, "rounds": set(), "done": False})
        emit(event="created", meeting=m.meeting_id, topic=m.topic, shape=event.shape)

    @service.handles("theboard.meeting.round_completed")
    async def round_completed(event: consumer.Envelope[MeetingRoundCompletedV1]) -> None:
        r = event.data
        meeting = meetings.get(str(r.meeting_id))
        if meeting is None:
            raise LookupError(f"meeting {r.meeting_id} is not known (yet)")
        rounds = meeting["rounds"]
        assert isinstance(rounds, set)
        rounds.add((r.round_num, r.agent_name))
        emit(event="round", meeting=r.meeting_id, rounds=len(rounds), shape=event.shape)

    @service.handles("theboard.meeting.completed")
    async def completed(event: consumer.Envelope[MeetingCompletedV1]) -> None:
        meeting = meetings.get(str(event.data.meeting_id))
        if meeting is None:
            raise LookupError(f"meeting {event.data.meeting_id} is not known (yet)")
        meeting["done"] = True
        rounds = meeting["rounds"]
        assert isinstance(rounds, set)
        emit(event="completed", meeting=event.data.meeting_id, rounds=len(rounds))

    return service


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--backoff-ms", type=int, nargs="+", default=[1000, 10_000, 60_000])
    parser.add_argument("--health-port", type=int, default=None)
    args = parser.parse_args()
    service = build(args)
    await service.start()
    if args.health_port is not None:
        port = await service.serve_health(port=args.health_port)
        emit(event="health", port=port)
    emit(event="ready")
    await service.run()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
