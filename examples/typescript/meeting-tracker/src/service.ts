// theboard meeting tracker: a 33GOD consumer built on the generated TypeScript kit.
//
// It follows meetings on the bus: `theboard.meeting.created` starts tracking one,
// `theboard.meeting.round_completed` counts its rounds and `theboard.meeting.completed` closes
// it. A round of a meeting it has not seen created fails (the creation may still be on its
// way): the kit retries it with backoff and, when the meeting never appears, dead-letters it.
// Rounds are counted by (round, agent), so a redelivered event is not counted twice. Each
// state change is printed as one JSON line; --health-port serves the kit's health report.
//
//   npm ci && npm run generate && npm run build
//   node dist/service.js --url amqp://guest:guest@localhost:5672/

import { parseArgs } from "node:util";
import { Service } from "./events/consumer.js";
import type { theboard } from "./events/index.js";

interface Meeting {
  topic: string;
  rounds: Set<string>;
  done: boolean;
}

function emit(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "amqp://guest:guest@localhost:5672/" },
    "max-attempts": { type: "string", default: "3" },
    "backoff-ms": { type: "string", multiple: true, default: ["1000", "10000", "60000"] },
    "health-port": { type: "string" },
  },
  allowPositionals: true,
});

const service = new Service("meeting-tracker", {
  url: args.url,
  maxAttempts: Number(args["max-attempts"]),
  backoffMs: (args["backoff-ms"] ?? []).map(Number),
});
const meetings = new Map<string, Meeting>();

function known(id: string): Meeting {
  const meeting = meetings.get(id);
  if (!meeting) throw new Error(`meeting ${id} is not known (yet)`);
  return meeting;
}

service.handles<theboard.MeetingCreatedV1>("theboard.meeting.created", (event) => {
  const m = event.data;
  if (!meetings.has(m.meeting_id)) meetings.set(m.meeting_id, { topic: m.topic, rounds: new Set(), done: false });
  emit({ event: "created", meeting: m.meeting_id, topic: m.topic, shape: event.shape });
});

service.handles<theboard.MeetingRoundCompletedV1>("theboard.meeting.round_completed", (event) => {
  const r = event.data;
  const meeting = known(r.meeting_id);
  meeting.rounds.add(`${r.round_num}/${r.agent_name}`);
  emit({ event: "round", meeting: r.meeting_id, rounds: meeting.rounds.size, shape: event.shape });
});

service.handles<theboard.MeetingCompletedV1>("theboard.meeting.completed", (event) => {
  const meeting = known(event.data.meeting_id);
  meeting.done = true;
  emit({ event: "completed", meeting: event.data.meeting_id, rounds: meeting.rounds.size });
});

await service.start();
if (args["health-port"] !== undefined) {
  emit({ event: "health", port: await service.serveHealth(Number(args["health-port"])) });
}
emit({ event: "ready" });
await service.run();
