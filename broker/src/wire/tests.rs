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
