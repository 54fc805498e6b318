//! Round trips and robustness of the frame codec.

use super::*;
use amq_protocol::protocol::{basic, queue, AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn short() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._#*-]{0,40}"
}

fn method() -> impl Strategy<Value = AMQPClass> {
    prop_oneof![
        (short(), any::<[bool; 5]>(), short(), any::<i64>()).prop_map(|(name, f, key, n)| {
            let mut arguments = FieldTable::default();
            arguments.insert(key.into(), AMQPValue::LongLongInt(n));
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                passive: f[0],
                durable: f[1],
                exclusive: f[2],
                auto_delete: f[3],
                nowait: f[4],
                arguments,
            }))
        }),
        (short(), short(), any::<bool>()).prop_map(|(exchange, key, mandatory)| {
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: exchange.into(),
                routing_key: key.into(),
                mandatory,
                immediate: false,
            }))
        }),
        (any::<u64>(), any::<bool>()).prop_map(|(delivery_tag, multiple)| {
            AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag,
                multiple,
            }))
        }),
    ]
}

fn decode_all(mut buf: BytesMut, frame_max: u32) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = decode_frame(&mut buf, frame_max).expect("valid frames decode") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "every byte consumed");
    frames
}

proptest! {
    #[test]
    fn methods_round_trip(channel in 0u16..=u16::MAX, m in method()) {
        let mut buf = BytesMut::new();
        encode_method(&mut buf, channel, &m);
        prop_assert_eq!(decode_all(buf, 0), vec![Frame::Method(channel, m)]);
    }

    #[test]
    fn content_round_trips_across_body_frames(
        channel in 1u16..100,
        body in prop::collection::vec(any::<u8>(), 0..20_000),
        content_type in proptest::option::of("[a-z/]{1,20}"),
        delivery_mode in proptest::option::of(1u8..=2),
        frame_max in 4096u32..10_000,
    ) {
        let mut props = BasicProperties::default();
        if let Some(ct) = content_type { props = props.with_content_type(ct.into()); }
        if let Some(dm) = delivery_mode { props = props.with_delivery_mode(dm); }
        let raw = encode_properties(&props);
        let mut buf = BytesMut::new();
        encode_content(&mut buf, channel, &raw, &body, frame_max);
        let frames = decode_all(buf, frame_max);
        let Frame::Header(ch, header) = &frames[0] else { panic!("header first") };
        prop_assert_eq!(*ch, channel);
        prop_assert_eq!(&header.properties, &props);
        prop_assert_eq!(&header.raw_properties, &raw);
        prop_assert_eq!(header.body_size, body.len() as u64);
        let mut joined = Vec::new();
        for f in &frames[1..] {
            let Frame::Body(ch, part) = f else { panic!("body frames follow") };
            prop_assert_eq!(*ch, channel);
            prop_assert!(part.len() + 8 <= frame_max as usize);
            joined.extend_from_slice(part);
        }
        prop_assert_eq!(joined, body);
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames(m in method(), body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut whole = BytesMut::new();
        encode_method(&mut whole, 3, &m);
        encode_content(&mut whole, 3, &encode_properties(&BasicProperties::default()), &body, 4096);
        encode_heartbeat(&mut whole);
        let expected = decode_all(whole.clone(), 0);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in whole.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(f) = decode_frame(&mut buf, 0).unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), frame_max in prop_oneof![Just(0u32), 4096u32..70_000]) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode_frame(&mut buf, frame_max) {}
    }
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 1, 0, 0][..]);
    let err = decode_frame(&mut buf, 4096).unwrap_err();
    assert_eq!(err.code, 501);
}

#[test]
fn body_frames_carry_their_payload() {
    let mut buf = BytesMut::new();
    encode_content(&mut buf, 1, &[0, 0], b"hello", 4096);
    let frames = decode_all(buf, 4096);
    assert_eq!(frames[1], Frame::Body(1, Bytes::from_static(b"hello")));
}

/// The general path's content header for the same bytes the fast path reads.
fn general_header(payload: &[u8]) -> (u16, u64, BasicProperties) {
    let (_, h) = amq_protocol::frame::parsing::parse_content_header(payload).expect("parses");
    (h.class_id, h.body_size, h.properties)
}

proptest! {
    #[test]
    fn message_methods_are_encoded_as_amq_protocol_encodes_them(
        channel in 0u16..=u16::MAX,
        tag in short(),
        delivery_tag in any::<u64>(),
        redelivered in any::<bool>(),
        count in any::<u32>(),
        code in any::<u16>(),
        exchange in short(),
        key in short(),
    ) {
        let cases = [
            (
                MessageMethod::Deliver { consumer_tag: &tag, delivery_tag, redelivered },
                basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: tag.clone().into(),
                    delivery_tag,
                    redelivered,
                    exchange: exchange.clone().into(),
                    routing_key: key.clone().into(),
                }),
            ),
            (
                MessageMethod::GetOk { delivery_tag, redelivered, message_count: count },
                basic::AMQPMethod::GetOk(basic::GetOk {
                    delivery_tag,
                    redelivered,
                    exchange: exchange.clone().into(),
                    routing_key: key.clone().into(),
                    message_count: count,
                }),
            ),
            (
                MessageMethod::Return { reply_code: code, reply_text: &tag },
                basic::AMQPMethod::Return(basic::Return {
                    reply_code: code,
                    reply_text: tag.clone().into(),
                    exchange: exchange.clone().into(),
                    routing_key: key.clone().into(),
                }),
            ),
        ];
        for (fast, general) in cases {
            let mut ours = BytesMut::new();
            encode_message_method(&mut ours, channel, fast, &exchange, &key);
            let mut theirs = BytesMut::new();
            encode_method(&mut theirs, channel, &AMQPClass::Basic(general));
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn plain_content_headers_read_as_the_general_parser_reads_them(
        body_size in any::<u64>(),
        mode in proptest::option::of(any::<u8>()),
    ) {
        let mut props = BasicProperties::default();
        if let Some(m) = mode {
            props = props.with_delivery_mode(m);
        }
        let mut payload = vec![0, 60, 0, 0];
        payload.extend_from_slice(&body_size.to_be_bytes());
        payload.extend_from_slice(&encode_properties(&props));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[2, 0, 1]);
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&[FRAME_END]);
        let Some(Frame::Header(1, h)) = decode_frame(&mut buf, 0).expect("decodes") else {
            panic!("a content header");
        };
        prop_assert_eq!((h.class_id, h.body_size, h.properties.clone()), general_header(&payload));
        prop_assert_eq!(h.properties, props);
    }
}

fn publish_frame(args: &[u8]) -> BytesMut {
    let mut payload = vec![0, 60, 0, 40];
    payload.extend_from_slice(args);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[1, 0, 1]);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&payload);
    buf.extend_from_slice(&[FRAME_END]);
    buf
}

#[test]
fn a_malformed_publish_is_a_syntax_error_naming_what_is_wrong() {
    let cases: [(&[u8], &str); 4] = [
        (
            &[0, 0, 1, 0xff, 0, 0],
            "malformed exchange in basic.publish",
        ),
        (
            &[0, 0, 0, 9, b'k'],
            "malformed routing key in basic.publish",
        ),
        (&[0, 0, 0, 1, b'k'], "truncated arguments in basic.publish"),
        (&[0, 0, 0, 1, b'k', 0, 0], "trailing bytes in basic.publish"),
    ];
    for (args, text) in cases {
        let err = decode_frame(&mut publish_frame(args), 0).expect_err("refused");
        assert_eq!(err.code, crate::error::code::SYNTAX_ERROR, "{text}");
        assert_eq!(err.text, format!("SYNTAX_ERROR - {text}"));
    }
    let ok = decode_frame(&mut publish_frame(&[0, 0, 1, b'x', 1, b'k', 3]), 0).expect("valid");
    let Some(Frame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(p)))) = ok else {
        panic!("a publish");
    };
    assert_eq!((p.exchange.as_str(), p.routing_key.as_str()), ("x", "k"));
    assert!(p.mandatory && p.immediate);
}
