// theboardroom's STOMP client, configured as theboardroom configures it: @stomp/stompjs over
// WebSocket (the `ws` package), login guest/guest, heart-beats 10000/10000, reconnect delay
// 1000 ms, SUBSCRIBE /exchange/events/theboard.# with ack auto, bodies parsed as JSON.
// Prints "subscribed" once live, then the received events as JSON once EXPECTED arrived.
//   node stomp_board.mjs WS_URL EXPECTED
import { Client } from "@stomp/stompjs";
import WebSocket from "ws";

Object.assign(globalThis, { WebSocket });
const [url, expected] = process.argv.slice(2);
const received = [];
const client = new Client({
  brokerURL: url,
  connectHeaders: { login: "guest", passcode: "guest" },
  heartbeatIncoming: 10000,
  heartbeatOutgoing: 10000,
  reconnectDelay: 1000,
});
client.onConnect = (frame) => {
  client.watchForReceipt("live", () => console.log("subscribed"));
  client.subscribe(
    "/exchange/events/theboard.#",
    (message) => {
      received.push({ destination: message.headers.destination, body: JSON.parse(message.body) });
      if (received.length === Number(expected)) {
        console.log(JSON.stringify({ server: frame.headers.server, version: frame.headers.version, received }));
        client.deactivate().then(() => process.exit(0));
      }
    },
    { ack: "auto", receipt: "live" },
  );
};
client.onStompError = (frame) => {
  console.error("STOMP error", frame.headers.message, frame.body);
  process.exit(1);
};
client.activate();
setTimeout(() => {
  console.error(`timed out with ${received.length} of ${expected}`);
  process.exit(2);
}, 30000);
