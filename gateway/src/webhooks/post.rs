//! One webhook delivery over HTTP/1.1 (plain `http://` targets): the envelope as the body,
//! signed with HMAC-SHA256 of the body under the subscription's secret, bounded in time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A target that takes longer than this to answer has failed this attempt.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the answer is read (the status line and a little of the body, for the error).
const READ_MAX: usize = 8 * 1024;

/// `sha256=<hex>`: the signature header's value for `body`.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// What a delivery needs besides the body.
pub(crate) struct Target<'a> {
    /// `host:port`
    pub addr: &'a str,
    pub path: &'a str,
    pub secret: &'a str,
}

/// Headers that say what is delivered.
pub(crate) struct About<'a> {
    pub event_type: &'a str,
    pub delivery: &'a str,
    pub attempt: u32,
}

/// POSTs `body`; Ok on a 2xx answer, else why not.
pub(crate) async fn post(
    target: &Target<'_>,
    about: &About<'_>,
    body: &[u8],
) -> Result<(), String> {
    match tokio::time::timeout(TIMEOUT, exchange(target, about, body)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    }
}

async fn exchange(target: &Target<'_>, about: &About<'_>, body: &[u8]) -> Result<(), String> {
    let mut stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connecting to {}: {e}", target.addr))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\
         User-Agent: bloodbank-webhooks\r\nX-Bloodbank-Signature: {sig}\r\n\
         X-Bloodbank-Event-Type: {event_type}\r\nX-Bloodbank-Delivery: {delivery}\r\n\
         X-Bloodbank-Attempt: {attempt}\r\n\r\n",
        path = target.path,
        host = target.addr,
        len = body.len(),
        sig = signature(target.secret, body),
        event_type = header_safe(about.event_type),
        delivery = header_safe(about.delivery),
        attempt = about.attempt,
    );
    let io = |e: std::io::Error| format!("talking to {}: {e}", target.addr);
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 2048];
    while answer.len() < READ_MAX {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.len() > 256 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{} did not answer HTTP", target.addr))?;
    match status {
        200..=299 => Ok(()),
        _ => {
            let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let body: String = body.chars().take(200).collect();
            Err(format!("{} answered {status} {}", target.addr, body.trim()))
        }
    }
}

/// A value fit for a header line (no CR or LF).
fn header_safe(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn header_values_lose_line_breaks() {
        assert_eq!(header_safe("a\r\nX-Evil: 1"), "aX-Evil: 1");
    }
}
