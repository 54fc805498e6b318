//! STOMP destinations as RabbitMQ's STOMP plugin maps them onto AMQP (facts measured against
//! RabbitMQ 3.10): where a SEND publishes and which queue it declares first, what a SUBSCRIBE
//! consumes and declares, queue arguments from `x-` headers, and the `destination` a MESSAGE
//! shows. Pure functions.

use super::frame::{Frame, Refused};
use crate::core::declare::QueueSpec;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use base64::Engine;
use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

/// A destination header, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// `/exchange/<name>[/<pattern>]`
    Exchange { name: String, pattern: String },
    /// `/queue/<name>`: a durable queue the plugin declares.
    Queue(String),
    /// `/amq/queue/<name>`: an existing queue, not declared.
    AmqQueue(String),
    /// `/topic/<key>`: `amq.topic` with that routing key or pattern.
    Topic(String),
    /// `/temp-queue/<name>`: valid only as a SEND's `reply-to`, where it stands for a queue
    /// of this session's own.
    TempQueue(String),
    /// `/reply-queue/<queue>`: the queue a `reply-to` named, reached through the default
    /// exchange; not declared.
    ReplyQueue(String),
}

/// The ERROR for a destination that is none of the kinds (RabbitMQ's wording).
pub(crate) fn unknown(d: &str) -> Refused {
    Refused::new(
        "Unknown destination",
        format!(
            "'{d}' is not a valid destination.\nValid destination types are: /temp-queue, \
             /exchange, /topic, /queue, /amq/queue, /reply-queue/."
        ),
    )
}

/// The ERROR for a destination used where it cannot be.
fn invalid_for(d: &str, command: &str) -> Refused {
    Refused::new(
        "Invalid destination",
        format!("'{d}' is not a valid destination for '{command}'"),
    )
}

impl Destination {
    pub(crate) fn parse(d: &str) -> Result<Destination, Refused> {
        let named = |rest: &str, kind: fn(String) -> Destination| match rest.is_empty() {
            true => Err(unknown(d)),
            false => Ok(kind(rest.to_string())),
        };
        if let Some(rest) = d.strip_prefix("/exchange/") {
            let (name, pattern) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(unknown(d));
            }
            return Ok(Destination::Exchange {
                name: name.to_string(),
                pattern: pattern.to_string(),
            });
        }
        if let Some(rest) = d.strip_prefix("/queue/") {
            return named(rest, Destination::Queue);
        }
        if let Some(rest) = d.strip_prefix("/amq/queue/") {
            return named(rest, Destination::AmqQueue);
        }
        if let Some(rest) = d.strip_prefix("/topic/") {
            return named(rest, Destination::Topic);
        }
        if let Some(rest) = d.strip_prefix("/temp-queue/") {
            return named(rest, Destination::TempQueue);
        }
        if let Some(rest) = d.strip_prefix("/reply-queue/") {
            return match rest.is_empty() {
                true => Err(Refused::new(
                    "Invalid destination",
                    "'/' is not a valid reply_queue destination",
                )),
                false => Ok(Destination::ReplyQueue(rest.to_string())),
            };
        }
        Err(unknown(d))
    }

    /// Where a SEND to this destination publishes, (exchange, routing key), and the queue
    /// it declares first.
    pub(crate) fn send_target(
        &self,
        frame: &Frame,
    ) -> Result<(&str, &str, Option<QueueSpec>), Refused> {
        Ok(match self {
            Destination::Exchange { name, pattern } => (name, pattern, None),
            Destination::Queue(q) => ("", q, Some(durable_queue(q, frame)?)),
            Destination::AmqQueue(q) | Destination::ReplyQueue(q) => ("", q, None),
            Destination::Topic(key) => ("amq.topic", key, None),
            Destination::TempQueue(_) => {
                return Err(invalid_for(
                    frame.header("destination").unwrap_or(""),
                    "SEND",
                ))
            }
        })
    }

    /// What a SUBSCRIBE with this destination consumes from (`id`: the subscription's).
    pub(crate) fn source(&self, frame: &Frame, id: &str) -> Result<Source, Refused> {
        let existing = |q: &String| QueueSpec {
            name: q.clone(),
            passive: true,
            ..Default::default()
        };
        Ok(match self {
            Destination::Queue(q) => Source::Queue(durable_queue(q, frame)?),
            Destination::AmqQueue(q) | Destination::ReplyQueue(q) => Source::Queue(existing(q)),
            Destination::Exchange { name, pattern } => Source::Bound {
                queue: subscription_queue(frame, id)?,
                exchange: name.clone(),
                pattern: pattern.clone(),
            },
            Destination::Topic(key) => Source::Bound {
                queue: subscription_queue(frame, id)?,
                exchange: "amq.topic".to_string(),
                pattern: key.clone(),
            },
            Destination::TempQueue(_) => {
                return Err(invalid_for(
                    frame.header("destination").unwrap_or(""),
                    "SUBSCRIBE",
                ))
            }
        })
    }
}

/// Where a subscription's messages come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A queue declared (or, passively, checked) and consumed as it is.
    Queue(QueueSpec),
    /// A queue of the subscription's own, bound to `exchange` with `pattern`.
    Bound {
        queue: QueueSpec,
        exchange: String,
        pattern: String,
    },
}

fn header_true(frame: &Frame, name: &str) -> bool {
    frame.header(name) == Some("true")
}

/// A `/queue/` destination's queue: durable, with the frame's `x-` arguments.
fn durable_queue(name: &str, frame: &Frame) -> Result<QueueSpec, Refused> {
    Ok(QueueSpec {
        name: name.to_string(),
        durable: true,
        arguments: queue_arguments(frame)?,
        ..Default::default()
    })
}

/// The queue of an `/exchange/` or `/topic/` subscription. `durable:true` (or the older
/// `persistent:true`) makes a durable queue whose name follows from the destination and the
/// subscription id, so a client that subscribes again after a reconnect finds its messages;
/// it is auto-delete unless `auto-delete:false`. Otherwise a fresh auto-delete queue,
/// exclusive with `exclusive:true`. `x-queue-name` names the queue.
fn subscription_queue(frame: &Frame, id: &str) -> Result<QueueSpec, Refused> {
    let durable = header_true(frame, "durable") || header_true(frame, "persistent");
    if durable && frame.header("id").is_none() {
        return Err(Refused::new(
            "Missing Header",
            "Header 'id' is required for durable subscriptions",
        ));
    }
    let name = match (frame.header("x-queue-name"), durable) {
        (Some(name), _) => name.to_string(),
        (None, true) => durable_subscription_name(frame.header("destination").unwrap_or(""), id),
        (None, false) => format!(
            "stomp-subscription-{}",
            Alphanumeric.sample_string(&mut rand::rng(), 22)
        ),
    };
    Ok(QueueSpec {
        name,
        durable,
        exclusive: !durable && header_true(frame, "exclusive"),
        auto_delete: frame.header("auto-delete") != Some("false"),
        arguments: queue_arguments(frame)?,
        ..Default::default()
    })
}

/// The queue name of a durable subscription: the same for the same destination and id.
pub(crate) fn durable_subscription_name(destination: &str, id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(destination.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    format!(
        "stomp-subscription-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    )
}

/// Queue arguments RabbitMQ takes from SEND and SUBSCRIBE headers; other `x-` headers are
/// ignored, as there.
const INTEGER_ARGUMENTS: &[&str] = &[
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-stream-max-segment-size-bytes",
];
const STRING_ARGUMENTS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-age",
    "x-queue-type",
];

/// The queue arguments a frame's headers ask for (the core then checks their values).
pub(crate) fn queue_arguments(frame: &Frame) -> Result<FieldTable, Refused> {
    let mut table = FieldTable::default();
    for (k, v) in &frame.headers {
        let value = if INTEGER_ARGUMENTS.contains(&k.as_str()) {
            let n = v.trim().parse::<i64>().map_err(|_| {
                Refused::new(
                    "Processing error",
                    format!("Header '{k}' must be an integer, not '{v}'"),
                )
            })?;
            AMQPValue::LongLongInt(n)
        } else if STRING_ARGUMENTS.contains(&k.as_str()) {
            AMQPValue::LongString(LongString::from(v.as_str()))
        } else {
            continue;
        };
        if !table.inner().contains_key(k.as_str()) {
            table.insert(ShortString::from(k.clone()), value);
        }
    }
    Ok(table)
}

/// The `destination` of a MESSAGE: from the delivery's exchange and routing key.
pub(crate) fn message_destination(exchange: &str, routing_key: &str) -> String {
    match exchange {
        "" => format!("/queue/{routing_key}"),
        "amq.topic" => format!("/topic/{routing_key}"),
        x => format!("/exchange/{x}/{routing_key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new("SUBSCRIBE"), |f, (k, v)| f.with(k, *v))
    }

    #[test]
    fn destinations_parse_and_map_as_rabbitmq_does() {
        let send = |d: &str| {
            let f = frame(&[("destination", d)]);
            let dest = Destination::parse(d).unwrap();
            let (x, rk, declare) = dest.send_target(&f).unwrap();
            (x.to_string(), rk.to_string(), declare.map(|q| q.name))
        };
        let s = |v: &str| v.to_string();
        assert_eq!(
            send("/exchange/events/theboard.#"),
            (s("events"), s("theboard.#"), None)
        );
        assert_eq!(send("/exchange/events"), (s("events"), s(""), None));
        assert_eq!(send("/queue/a/b"), (s(""), s("a/b"), Some(s("a/b"))));
        assert_eq!(send("/amq/queue/q"), (s(""), s("q"), None));
        assert_eq!(
            send("/reply-queue/amq.gen-1"),
            (s(""), s("amq.gen-1"), None)
        );
        assert_eq!(send("/topic/x.y"), (s("amq.topic"), s("x.y"), None));
        let temp = Destination::parse("/temp-queue/t").unwrap();
        let refused = temp.send_target(&frame(&[("destination", "/temp-queue/t")]));
        assert_eq!(refused.unwrap_err().message, "Invalid destination");
        for bad in [
            "/queue/",
            "/nowhere/x",
            "queue/a",
            "/exchange/",
            "/temp-queue/",
        ] {
            assert_eq!(
                Destination::parse(bad).unwrap_err().message,
                "Unknown destination",
                "{bad}"
            );
        }
        assert_eq!(
            Destination::parse("/reply-queue/").unwrap_err().message,
            "Invalid destination"
        );
        assert_eq!(message_destination("", "q"), "/queue/q");
        assert_eq!(message_destination("amq.topic", "a.b"), "/topic/a.b");
        assert_eq!(message_destination("events", "a.b"), "/exchange/events/a.b");
    }

    fn bound_queue(headers: &[(&str, &str)]) -> Result<QueueSpec, Refused> {
        let f = frame(headers);
        let dest = Destination::parse(f.header("destination").unwrap()).unwrap();
        match dest.source(&f, f.header("id").unwrap_or("d"))? {
            Source::Bound { queue, .. } => Ok(queue),
            Source::Queue(q) => panic!("not bound: {q:?}"),
        }
    }

    #[test]
    fn durable_subscriptions_have_stable_names_and_need_an_id() {
        let d = [
            ("destination", "/topic/a.#"),
            ("id", "s1"),
            ("durable", "true"),
            ("auto-delete", "false"),
        ];
        let q = bound_queue(&d).unwrap();
        assert!(q.durable && !q.auto_delete && !q.exclusive);
        assert_eq!(q.name, bound_queue(&d).unwrap().name);
        assert_eq!(q.name, durable_subscription_name("/topic/a.#", "s1"));
        assert_ne!(q.name, durable_subscription_name("/topic/a.#", "s2"));
        let old_style = bound_queue(&[
            ("destination", "/topic/a"),
            ("id", "s"),
            ("persistent", "true"),
        ]);
        let old_style = old_style.unwrap();
        assert!(old_style.durable && old_style.auto_delete);
        let no_id = bound_queue(&[("destination", "/topic/a"), ("durable", "true")]);
        assert_eq!(no_id.unwrap_err().message, "Missing Header");
        let plain = bound_queue(&[("destination", "/exchange/x/k"), ("id", "1")]).unwrap();
        assert!(!plain.durable && plain.auto_delete && !plain.exclusive);
        assert_ne!(
            plain.name,
            bound_queue(&[("destination", "/exchange/x/k"), ("id", "1")])
                .unwrap()
                .name
        );
        let exclusive = bound_queue(&[("destination", "/topic/a"), ("exclusive", "true")]).unwrap();
        assert!(exclusive.exclusive);
        let named = bound_queue(&[("destination", "/topic/a"), ("x-queue-name", "mine")]).unwrap();
        assert_eq!(named.name, "mine");
    }

    #[test]
    fn x_headers_become_queue_arguments() {
        let f = frame(&[
            ("x-message-ttl", "5000"),
            ("x-max-length", "10"),
            ("x-dead-letter-exchange", "dlx"),
            ("x-queue-type", "classic"),
            ("x-foo", "ignored"),
            ("custom", "ignored"),
        ]);
        let table = queue_arguments(&f).unwrap();
        let inner = table.inner();
        assert_eq!(inner.len(), 4);
        assert_eq!(
            inner.get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(5000))
        );
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("dlx".into()))
        );
        let bad = queue_arguments(&frame(&[("x-max-length", "ten")])).unwrap_err();
        assert_eq!(bad.message, "Processing error");
        assert!(bad.body.contains("x-max-length"));
    }
}
