//! A blocking AMQP client connection: the handshake, one channel, and synchronous methods.
//! After setup the socket belongs to the publisher or consumer loop.

use super::frames::{self, Args, BASIC, CHANNEL, CONNECTION, QUEUE};
use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Where to connect, from an `amqp://user:pass@host:port/vhost` URL.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: String,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("{url}: only amqp:// URLs"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (a, r),
            None => ("guest:guest", rest),
        };
        let (user, pass) = auth.split_once(':').unwrap_or((auth, ""));
        let (addr, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let vhost = match vhost {
            "" | "%2f" | "%2F" => "/".to_string(),
            v => v.to_string(),
        };
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:5672")
        };
        Ok(Target {
            addr,
            user: user.into(),
            pass: pass.into(),
            vhost,
        })
    }
}

pub struct Client {
    pub sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

fn broken(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

impl Client {
    /// Connects, logs in with PLAIN, opens the vhost and channel 1.
    pub fn connect(target: &Target) -> io::Result<Client> {
        let sock = TcpStream::connect(&target.addr)?;
        sock.set_nodelay(true)?;
        let mut c = Client {
            sock,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
        };
        c.sock.write_all(b"AMQP\x00\x00\x09\x01")?;
        c.expect(CONNECTION, 10)?;
        let mut response = vec![0];
        response.extend_from_slice(target.user.as_bytes());
        response.push(0);
        response.extend_from_slice(target.pass.as_bytes());
        let start_ok = Args::default()
            .table(&[])
            .short("PLAIN")
            .long(&response)
            .short("en_US");
        c.send(0, CONNECTION, 11, start_ok)?;
        let tune = c.expect(CONNECTION, 30)?;
        let channel_max = u16::from_be_bytes([tune[0], tune[1]]);
        let frame_max = u32::from_be_bytes([tune[2], tune[3], tune[4], tune[5]]);
        let frame_max = if frame_max == 0 {
            131_072
        } else {
            frame_max.min(131_072)
        };
        let tune_ok = Args::default().u16(channel_max).u32(frame_max).u16(0);
        c.send(0, CONNECTION, 31, tune_ok)?;
        c.send(
            0,
            CONNECTION,
            40,
            Args::default().short(&target.vhost).short("").u8(0),
        )?;
        c.expect(CONNECTION, 41)?;
        c.send(1, CHANNEL, 10, Args::default().short(""))?;
        c.expect(CHANNEL, 11)?;
        Ok(c)
    }

    pub fn send(&mut self, channel: u16, class: u16, method: u16, args: Args) -> io::Result<()> {
        let mut out = Vec::new();
        frames::method(&mut out, channel, class, method, args);
        self.sock.write_all(&out)
    }

    /// Reads frames until the method `class.method` arrives and returns its arguments; a
    /// close from the broker is an error carrying its reply.
    pub fn expect(&mut self, class: u16, method: u16) -> io::Result<Vec<u8>> {
        loop {
            match frames::split(&self.buf[self.start..self.end]).map_err(broken)? {
                Some((frame, n)) => {
                    self.start += n;
                    match frame.method() {
                        Some(m) if m == (class, method) => return Ok(frame.args().to_vec()),
                        Some((CONNECTION, 50)) | Some((CHANNEL, 40)) => {
                            return Err(broken(format!(
                                "broker closed: {}",
                                frames::close_reason(frame.args())
                            )))
                        }
                        _ => {}
                    }
                }
                None => {
                    if self.start == self.end {
                        self.start = 0;
                        self.end = 0;
                    }
                    let n = self.sock.read(&mut self.buf[self.end..])?;
                    if n == 0 {
                        return Err(broken("broker closed the socket"));
                    }
                    self.end += n;
                }
            }
        }
    }

    /// Declares `queue` (durable when asked, with `x-max-length` when given) and empties it.
    pub fn declare(
        &mut self,
        queue: &str,
        durable: bool,
        max_length: Option<i32>,
    ) -> io::Result<()> {
        let arguments: Vec<(&str, i32)> = max_length
            .map(|n| ("x-max-length", n))
            .into_iter()
            .collect();
        let bits = if durable { 0b10 } else { 0 };
        let args = Args::default()
            .u16(0)
            .short(queue)
            .u8(bits)
            .table(&arguments);
        self.send(1, QUEUE, 10, args)?;
        self.expect(QUEUE, 11)?;
        self.send(1, QUEUE, 30, Args::default().u16(0).short(queue).u8(0))?;
        self.expect(QUEUE, 31)?;
        Ok(())
    }

    pub fn delete(&mut self, queue: &str) -> io::Result<()> {
        self.send(1, QUEUE, 40, Args::default().u16(0).short(queue).u8(0))?;
        self.expect(QUEUE, 41)?;
        Ok(())
    }

    /// Starts consuming `queue`: no-ack, or manual acks within `prefetch`.
    pub fn consume(&mut self, queue: &str, no_ack: bool, prefetch: u16) -> io::Result<()> {
        if !no_ack {
            self.send(1, BASIC, 10, Args::default().u32(0).u16(prefetch).u8(0))?;
            self.expect(BASIC, 11)?;
        }
        let bits = if no_ack { 0b10 } else { 0 };
        let args = Args::default()
            .u16(0)
            .short(queue)
            .short("blast")
            .u8(bits)
            .table(&[]);
        self.send(1, BASIC, 20, args)?;
        self.expect(BASIC, 21)?;
        Ok(())
    }

    /// Bytes read past the last method `expect` returned (deliveries may follow consume-ok
    /// in the same read).
    pub fn leftover(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn close(mut self) {
        let args = Args::default().u16(200).short("bye").u16(0).u16(0);
        let _ = self.send(0, CONNECTION, 50, args);
        let _ = self.expect(CONNECTION, 51);
    }
}
