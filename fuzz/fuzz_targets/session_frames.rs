//! Feeds arbitrary bytes as frames to a whole session of an in-memory broker (after the
//! handshake): whatever the frames, the session ends in an AMQP error or at the end of the
//! input, never in a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    bloodbank_broker::feed_frames(data);
});
