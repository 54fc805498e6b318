// amqplib over amqps: connect with the test CA (and, with CLIENT_CERT, a client certificate
// and the EXTERNAL mechanism), publish with a confirm, consume it back. Prints one JSON line.
import amqp from "amqplib";
import fs from "node:fs";

const { AMQPS_PORT, CA, CLIENT_CERT, CLIENT_KEY } = process.env;
const external = Boolean(CLIENT_CERT);
const options = { ca: [fs.readFileSync(CA)], servername: "localhost" };
if (external) {
  options.cert = fs.readFileSync(CLIENT_CERT);
  options.key = fs.readFileSync(CLIENT_KEY);
  options.credentials = amqp.credentials.external();
}
const url = external
  ? `amqps://localhost:${AMQPS_PORT}`
  : `amqps://guest:guest@localhost:${AMQPS_PORT}`;
const conn = await amqp.connect(url, options);
const ch = await conn.createConfirmChannel();
const { queue } = await ch.assertQueue("", { exclusive: true });
await new Promise((resolve, reject) =>
  ch.sendToQueue(queue, Buffer.from("over tls"), { persistent: true }, (err) => (err ? reject(err) : resolve())));
const got = await new Promise((resolve) => ch.consume(queue, (m) => { ch.ack(m); resolve(m.content.toString()); }));
await conn.close();
console.log(JSON.stringify({ got, external }));
