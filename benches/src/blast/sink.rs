//! The null sink: a listener that speaks just enough AMQP for the generator (handshake,
//! channel, declare, purge, delete, qos, consume, close), discards everything published and
//! answers a consume with pre-encoded deliveries as fast as the socket takes them. The
//! generator against it shows its own ceiling.

use super::frames::{self, Args, BASIC, CHANNEL, CONNECTION, QUEUE};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// Starts the sink on a free loopback port; deliveries carry `body_size` byte bodies.
pub fn start(body_size: usize) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            thread::spawn(move || {
                let _ = serve(sock, body_size);
            });
        }
    });
    Ok(addr)
}

fn reply(
    sock: &mut TcpStream,
    channel: u16,
    class: u16,
    method: u16,
    args: Args,
) -> io::Result<()> {
    let mut out = Vec::new();
    frames::method(&mut out, channel, class, method, args);
    sock.write_all(&out)
}

fn serve(mut sock: TcpStream, body_size: usize) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let mut header = [0u8; 8];
    sock.read_exact(&mut header)?;
    let start = Args::default()
        .u8(0)
        .u8(9)
        .table(&[])
        .long(b"PLAIN")
        .long(b"en_US");
    reply(&mut sock, 0, CONNECTION, 10, start)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end) = (0, 0);
    loop {
        while let Some((frame, n)) = frames::split(&buf[start..end]).map_err(io::Error::other)? {
            start += n;
            let ch = frame.channel;
            let queue = || {
                frame
                    .args()
                    .get(2..)
                    .and_then(frames::short_str)
                    .map(|(q, _)| String::from_utf8_lossy(q).into_owned())
                    .unwrap_or_default()
            };
            match frame.method() {
                Some((CONNECTION, 11)) => {
                    let tune = Args::default().u16(2047).u32(131_072).u16(0);
                    reply(&mut sock, 0, CONNECTION, 30, tune)?;
                }
                Some((CONNECTION, 40)) => {
                    reply(&mut sock, 0, CONNECTION, 41, Args::default().short(""))?
                }
                Some((CONNECTION, 50)) => {
                    reply(&mut sock, 0, CONNECTION, 51, Args::default())?;
                    return Ok(());
                }
                Some((CHANNEL, 10)) => {
                    reply(&mut sock, ch, CHANNEL, 11, Args::default().long(b""))?
                }
                Some((QUEUE, 10)) => {
                    let ok = Args::default().short(&queue()).u32(0).u32(0);
                    reply(&mut sock, ch, QUEUE, 11, ok)?;
                }
                Some((QUEUE, 30)) => reply(&mut sock, ch, QUEUE, 31, Args::default().u32(0))?,
                Some((QUEUE, 40)) => reply(&mut sock, ch, QUEUE, 41, Args::default().u32(0))?,
                Some((BASIC, 10)) => reply(&mut sock, ch, BASIC, 11, Args::default())?,
                Some((BASIC, 20)) => {
                    let q = queue();
                    reply(&mut sock, ch, BASIC, 21, Args::default().short("blast"))?;
                    let out = sock.try_clone()?;
                    thread::spawn(move || deliver_forever(out, &q, body_size));
                }
                _ => {}
            }
        }
        if start == end {
            start = 0;
            end = 0;
        } else if end == buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = sock.read(&mut buf[end..])?;
        if n == 0 {
            return Ok(());
        }
        end += n;
    }
}

/// Writes batches of 1,000 pre-encoded deliveries until the consumer goes away.
fn deliver_forever(mut sock: TcpStream, queue: &str, body_size: usize) {
    let body = vec![b'x'; body_size];
    let mut batch = Vec::new();
    let mut tag = 0;
    loop {
        batch.clear();
        for _ in 0..1000 {
            tag += 1;
            frames::deliver(&mut batch, tag, queue, &body);
        }
        if sock.write_all(&batch).is_err() {
            return;
        }
    }
}
