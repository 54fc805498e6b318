//! The few AMQP 0.9.1 frames the pipelined generator writes and reads, encoded and parsed by
//! hand so no general client stands between the socket and the counters.

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;

pub const CONNECTION: u16 = 10;
pub const CHANNEL: u16 = 20;
pub const QUEUE: u16 = 50;
pub const BASIC: u16 = 60;

/// Arguments of a method, built field by field.
#[derive(Default)]
pub struct Args(pub Vec<u8>);

impl Args {
    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    pub fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn short(mut self, s: &str) -> Self {
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn long(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    /// A field table: `(name, signed 32-bit value)` pairs are all the generator needs.
    pub fn table(self, entries: &[(&str, i32)]) -> Self {
        let mut t = Vec::new();
        for (name, value) in entries {
            t.push(name.len() as u8);
            t.extend_from_slice(name.as_bytes());
            t.push(b'I');
            t.extend_from_slice(&value.to_be_bytes());
        }
        self.long(&t)
    }
}

fn frame(out: &mut Vec<u8>, kind: u8, channel: u16, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(FRAME_END);
}

pub fn method(out: &mut Vec<u8>, channel: u16, class: u16, method: u16, args: Args) {
    let mut payload = Vec::with_capacity(4 + args.0.len());
    payload.extend_from_slice(&class.to_be_bytes());
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(&args.0);
    frame(out, FRAME_METHOD, channel, &payload);
}

/// A whole message after its method frame: content header and one body frame.
pub fn content(out: &mut Vec<u8>, channel: u16, body: &[u8], persistent: bool) {
    let mut header = Vec::with_capacity(15);
    header.extend_from_slice(&BASIC.to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(body.len() as u64).to_be_bytes());
    if persistent {
        header.extend_from_slice(&0x1000u16.to_be_bytes());
        header.push(2);
    } else {
        header.extend_from_slice(&0u16.to_be_bytes());
    }
    frame(out, FRAME_HEADER, channel, &header);
    if !body.is_empty() {
        frame(out, FRAME_BODY, channel, body);
    }
}

/// `basic.publish` to the default exchange and `queue`, with its content.
pub fn publish(out: &mut Vec<u8>, queue: &str, body: &[u8], persistent: bool) {
    let args = Args::default().u16(0).short("").short(queue).u8(0);
    method(out, 1, BASIC, 40, args);
    content(out, 1, body, persistent);
}

/// `basic.deliver` with its content, as a broker would send it (for the null sink).
pub fn deliver(out: &mut Vec<u8>, tag: u64, queue: &str, body: &[u8]) {
    let args = Args::default()
        .short("blast")
        .u64(tag)
        .u8(0)
        .short("")
        .short(queue);
    method(out, 1, BASIC, 60, args);
    content(out, 1, body, false);
}

/// One frame cut from the front of a buffer.
pub struct Frame<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Class and method ids of a method frame.
    pub fn method(&self) -> Option<(u16, u16)> {
        if self.kind != FRAME_METHOD || self.payload.len() < 4 {
            return None;
        }
        let class = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        let method = u16::from_be_bytes([self.payload[2], self.payload[3]]);
        Some((class, method))
    }

    /// The method's arguments.
    pub fn args(&self) -> &[u8] {
        self.payload.get(4..).unwrap_or_default()
    }
}

/// The first whole frame in `buf` and its length, or None if it has not all arrived.
pub fn split(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, String> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if buf.len() < 8 + size {
        return Ok(None);
    }
    if buf[7 + size] != FRAME_END {
        return Err(format!("bad frame end after a type {} frame", buf[0]));
    }
    let frame = Frame {
        kind: buf[0],
        channel: u16::from_be_bytes([buf[1], buf[2]]),
        payload: &buf[7..7 + size],
    };
    Ok(Some((frame, 8 + size)))
}

/// A short string at the start of `args`, and what follows it.
pub fn short_str(args: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = *args.first()? as usize;
    let s = args.get(1..1 + len)?;
    Some((s, &args[1 + len..]))
}

/// The delivery tag of a `basic.deliver`'s arguments.
pub fn delivery_tag(args: &[u8]) -> Option<u64> {
    let (_, rest) = short_str(args)?;
    let tag = rest.get(..8)?;
    Some(u64::from_be_bytes(tag.try_into().ok()?))
}

/// Reply code and text of a `connection.close` or `channel.close`.
pub fn close_reason(args: &[u8]) -> String {
    let code = args
        .get(..2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .unwrap_or(0);
    let text = args
        .get(2..)
        .and_then(short_str)
        .map(|(t, _)| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    format!("{code} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_splits_into_method_header_and_body() {
        let mut buf = Vec::new();
        publish(&mut buf, "q", b"hello", true);
        let (m, n) = split(&buf).unwrap().unwrap();
        assert_eq!(m.method(), Some((BASIC, 40)));
        let (h, k) = split(&buf[n..]).unwrap().unwrap();
        assert_eq!(h.kind, FRAME_HEADER);
        assert_eq!(h.payload.len(), 15);
        let (b, j) = split(&buf[n + k..]).unwrap().unwrap();
        assert_eq!(b.payload, b"hello");
        assert_eq!(n + k + j, buf.len());
        assert!(split(&buf[..n - 1]).unwrap().is_none());
    }

    #[test]
    fn a_delivery_tag_is_read_back() {
        let mut buf = Vec::new();
        deliver(&mut buf, 77, "q", b"x");
        let (m, _) = split(&buf).unwrap().unwrap();
        assert_eq!(delivery_tag(m.args()), Some(77));
    }
}
