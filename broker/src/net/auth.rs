//! SASL PLAIN and AMQPLAIN responses, and comparing secrets in constant time.

use amq_protocol::types::parsing::parse_field_table;
use amq_protocol::types::AMQPValue;

/// (username, password) from a `connection.start-ok` response.
pub(crate) fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        "PLAIN" => {
            // [authzid] NUL authcid NUL passwd
            let mut parts = response.split(|b| *b == 0);
            let _authzid = parts.next()?;
            let user = parts.next()?;
            let pass = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            Some((
                String::from_utf8(user.to_vec()).ok()?,
                String::from_utf8(pass.to_vec()).ok()?,
            ))
        }
        "AMQPLAIN" => {
            // A field table without its length prefix.
            let mut table = (response.len() as u32).to_be_bytes().to_vec();
            table.extend_from_slice(response);
            let (_, fields) = parse_field_table(&table[..]).ok()?;
            let get = |k: &str| match fields.inner().get(k)? {
                AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
                AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

/// Compares two secrets without stopping at the first difference, so the time taken tells
/// nothing of how much of a guess matched.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_with_and_without_authzid() {
        assert_eq!(
            credentials("PLAIN", b"\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(
            credentials("PLAIN", b"admin\0guest\0secret"),
            Some(("guest".into(), "secret".into()))
        );
        assert_eq!(credentials("PLAIN", b"guest"), None);
        assert_eq!(credentials("EXTERNAL", b""), None);
    }

    #[test]
    fn amqplain_table() {
        let mut body = Vec::new();
        for (k, v) in [("LOGIN", "guest"), ("PASSWORD", "pw")] {
            body.push(k.len() as u8);
            body.extend_from_slice(k.as_bytes());
            body.push(b'S');
            body.extend_from_slice(&(v.len() as u32).to_be_bytes());
            body.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &body),
            Some(("guest".into(), "pw".into()))
        );
    }
}
