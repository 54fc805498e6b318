//! STOMP 1.0-1.2 frames: splitting a byte stream into frames (heart-beat end-of-lines
//! between them, `content-length` or NUL-terminated bodies, escaped header values) and
//! writing the server's frames. No I/O; every size a peer controls is bounded.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Most bytes of a frame's command and headers.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one frame.
pub(crate) const MAX_HEADERS: usize = 256;

/// One frame from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub command: String,
    /// In order; for a repeated header the first one counts (STOMP 1.2).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub(crate) fn new(command: &str) -> Frame {
        Frame {
            command: command.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn with(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub(crate) fn with_body(mut self, body: Bytes) -> Frame {
        self.body = body;
        self
    }
}

/// A frame the server refuses without ending the session: the ERROR's `message` header and
/// body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub message: &'static str,
    pub body: String,
}

impl Refused {
    pub(crate) fn new(message: &'static str, body: impl Into<String>) -> Refused {
        Refused {
            message,
            body: body.into(),
        }
    }

    pub(crate) fn frame(&self) -> Frame {
        error(self.message, &self.body)
    }
}

/// An ERROR frame as RabbitMQ writes them: a short `message`, the versions it speaks, and a
/// plain-text body saying what went wrong.
pub(crate) fn error(message: &str, body: &str) -> Frame {
    Frame::new("ERROR")
        .with("message", message)
        .with("content-type", "text/plain")
        .with("version", "1.0,1.1,1.2")
        .with_body(Bytes::from(format!("{body}\n")))
}

/// What the splitter found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// An end-of-line between frames: a heart-beat.
    HeartBeat,
    Frame(Frame),
}

/// Why the bytes are not STOMP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("the frame's command and headers are longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("the frame has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("the body is longer than {0} bytes")]
    BodyTooLong(usize),
    #[error("header line '{0}' has no ':'")]
    BadHeader(String),
    #[error("bad escape in header '{0}'")]
    BadEscape(String),
    #[error("content-length '{0}' is not a number")]
    BadLength(String),
    #[error("the body is not followed by NUL")]
    NoNul,
    #[error("the frame is not UTF-8")]
    NotUtf8,
}

/// Takes one frame (or heart-beat) off the front of `buf`; None until it is all there.
/// `max_body` bounds a body's size. `escapes`: header values use STOMP 1.1+ escapes (not in
/// CONNECT frames, and not for a 1.0 session).
pub(crate) fn parse(
    buf: &mut BytesMut,
    max_body: usize,
    escapes: bool,
) -> Result<Option<Parsed>, FrameError> {
    if buf.first() == Some(&b'\n') {
        buf.advance(1);
        return Ok(Some(Parsed::HeartBeat));
    }
    if buf.starts_with(b"\r\n") {
        buf.advance(2);
        return Ok(Some(Parsed::HeartBeat));
    }
    if buf.first() == Some(&b'\r') && buf.len() == 1 {
        return Ok(None);
    }
    let Some(head_end) = find(buf, b"\n\n", MAX_HEAD).or_else(|| find(buf, b"\r\n\r\n", MAX_HEAD))
    else {
        if buf.len() > MAX_HEAD {
            return Err(FrameError::HeadTooLong);
        }
        return Ok(None);
    };
    let sep = if buf[head_end] == b'\r' { 4 } else { 2 };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| FrameError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let command = lines.next().unwrap_or_default().to_string();
    let decode = escapes && command != "CONNECT" && command != "STOMP";
    let mut headers = Vec::new();
    for line in lines {
        if headers.len() == MAX_HEADERS {
            return Err(FrameError::TooManyHeaders);
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| FrameError::BadHeader(line.to_string()))?;
        let (k, v) = match decode {
            true => (unescape(k)?, unescape(v)?),
            false => (k.to_string(), v.to_string()),
        };
        headers.push((k, v));
    }
    let body_start = head_end + sep;
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| FrameError::BadLength(v.clone()))
        })
        .transpose()?;
    let body_end = match length {
        Some(n) if n > max_body => return Err(FrameError::BodyTooLong(max_body)),
        Some(n) => {
            if buf.len() < body_start + n + 1 {
                return Ok(None);
            }
            if buf[body_start + n] != 0 {
                return Err(FrameError::NoNul);
            }
            body_start + n
        }
        None => match buf[body_start..].iter().position(|b| *b == 0) {
            Some(i) => body_start + i,
            None if buf.len() - body_start > max_body => {
                return Err(FrameError::BodyTooLong(max_body))
            }
            None => return Ok(None),
        },
    };
    let mut frame = buf.split_to(body_end + 1);
    frame.truncate(body_end);
    let body = frame.split_off(body_start).freeze();
    Ok(Some(Parsed::Frame(Frame {
        command,
        headers,
        body,
    })))
}

fn find(buf: &[u8], needle: &[u8], limit: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(limit + needle.len())];
    window.windows(needle.len()).position(|w| w == needle)
}

fn unescape(s: &str) -> Result<String, FrameError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            _ => return Err(FrameError::BadEscape(s.to_string())),
        }
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ':' => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

/// A server frame on the wire: escaped headers (except in CONNECTED, and for a 1.0
/// session), `content-length` when there is a body, then NUL.
pub(crate) fn encode(frame: &Frame, escapes: bool, out: &mut BytesMut) {
    let escaped = escapes && frame.command != "CONNECTED";
    out.put_slice(frame.command.as_bytes());
    out.put_u8(b'\n');
    for (k, v) in &frame.headers {
        match escaped {
            true => {
                out.put_slice(escape(k).as_bytes());
                out.put_u8(b':');
                out.put_slice(escape(v).as_bytes());
            }
            false => {
                out.put_slice(k.as_bytes());
                out.put_u8(b':');
                out.put_slice(v.as_bytes());
            }
        }
        out.put_u8(b'\n');
    }
    if !frame.body.is_empty() {
        out.put_slice(format!("content-length:{}\n", frame.body.len()).as_bytes());
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Result<Parsed, FrameError>> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match parse(&mut buf, 1024, true) {
                Ok(Some(p)) => out.push(Ok(p)),
                Ok(None) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[test]
    fn frames_heartbeats_lengths_and_escapes() {
        let wire = b"\nSEND\ndestination:/queue/a\nk:a\\cb\\nc\nk:second\n\nhello\0\r\nSEND\ncontent-length:3\n\na\0b\0";
        let got = all(wire);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Ok(Parsed::HeartBeat));
        let Ok(Parsed::Frame(f)) = &got[1] else {
            panic!("{got:?}")
        };
        assert_eq!(f.command, "SEND");
        assert_eq!(f.header("k"), Some("a:b\nc"));
        assert_eq!(&f.body[..], b"hello");
        assert_eq!(got[2], Ok(Parsed::HeartBeat));
        let Ok(Parsed::Frame(f)) = &got[3] else {
            panic!("{got:?}")
        };
        assert_eq!(&f.body[..], b"a\0b");
    }

    #[test]
    fn partial_frames_wait_and_limits_hold() {
        assert!(all(b"SEND\ndestination:/q").is_empty());
        assert!(all(b"SEND\ncontent-length:10\n\nabc").is_empty());
        assert_eq!(
            all(b"SEND\ncontent-length:2000\n\n"),
            vec![Err(FrameError::BodyTooLong(1024))]
        );
        assert_eq!(
            all(b"SEND\ncontent-length:x\n\n\0"),
            vec![Err(FrameError::BadLength("x".into()))]
        );
        assert_eq!(
            all(b"SEND\nnocolon\n\n\0"),
            vec![Err(FrameError::BadHeader("nocolon".into()))]
        );
        assert_eq!(
            all(b"SEND\nk:\\t\n\n\0"),
            vec![Err(FrameError::BadEscape("\\t".into()))]
        );
        assert_eq!(
            all(b"SEND\ncontent-length:1\n\nab"),
            vec![Err(FrameError::NoNul)]
        );
        let many: String = (0..300).map(|i| format!("h{i}:v\n")).collect();
        assert_eq!(
            all(format!("SEND\n{many}\n\0").as_bytes()),
            vec![Err(FrameError::TooManyHeaders)]
        );
        assert_eq!(
            all(&vec![b'A'; MAX_HEAD + 10]),
            vec![Err(FrameError::HeadTooLong)]
        );
    }

    #[test]
    fn connect_headers_are_not_unescaped_and_encoding_round_trips() {
        let got = all(b"CONNECT\nlogin:a\\cb\n\n\0");
        let Ok(Parsed::Frame(f)) = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(f.header("login"), Some("a\\cb"));
        let frame = Frame::new("MESSAGE")
            .with("k", "a:b\nc")
            .with_body(Bytes::from_static(b"x\0y"));
        let mut out = BytesMut::new();
        encode(&frame, true, &mut out);
        let mut back = out.clone();
        let Ok(Some(Parsed::Frame(f))) = parse(&mut back, 1024, true) else {
            panic!()
        };
        assert_eq!(f.header("k"), Some("a:b\nc"));
        assert_eq!(&f.body[..], b"x\0y");
    }
}
