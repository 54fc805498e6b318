//! Feeds arbitrary bytes to the frame splitter and the method/content-header parsers, as a
//! client would after the protocol header: any input must give frames or an AMQP error, never a
//! panic or a runaway allocation.
#![no_main]

use bloodbank_broker::wire::decode_frame;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a negotiated frame_max, as tune-ok would.
    let (frame_max, rest) = match data.split_first() {
        Some((b, rest)) => (4096 + u32::from(*b) * 512, rest),
        None => return,
    };
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_frame)) = decode_frame(&mut buf, frame_max) {}
});
