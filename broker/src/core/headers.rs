//! Headers-exchange matching: `x-match` = `all` (default) or `any`, and the `-with-x` variants
//! that also compare `x-` headers. A binding argument with a void value only asks for presence.

use amq_protocol::types::{AMQPValue, FieldTable};

pub(crate) fn headers_match(
    binding_args: &FieldTable,
    message_headers: Option<&FieldTable>,
) -> bool {
    let mode = match binding_args.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "all".to_string(),
    };
    let (any, with_x) = match mode.as_str() {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = FieldTable::default();
    let headers = message_headers.unwrap_or(&empty).inner();
    let mut considered = binding_args
        .inner()
        .iter()
        .filter(|(k, _)| k.as_str() != "x-match" && (with_x || !k.as_str().starts_with("x-")));
    let one = |(k, v): (&amq_protocol::types::ShortString, &AMQPValue)| match headers.get(k) {
        None => false,
        Some(actual) => matches!(v, AMQPValue::Void) || values_equal(v, actual),
    };
    if any {
        considered.any(one)
    } else {
        considered.all(one)
    }
}

/// Strings compare by content whether short or long, as clients send either.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (a, b) {
        (AMQPValue::LongString(x), AMQPValue::ShortString(y))
        | (AMQPValue::ShortString(y), AMQPValue::LongString(x)) => {
            x.as_bytes() == y.as_str().as_bytes()
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), AMQPValue::LongString((*v).into()));
        }
        t
    }

    #[test]
    fn all_and_any() {
        let msg = table(&[("format", "pdf"), ("type", "report")]);
        assert!(headers_match(&table(&[("format", "pdf")]), Some(&msg)));
        assert!(!headers_match(
            &table(&[("format", "pdf"), ("type", "log")]),
            Some(&msg)
        ));
        assert!(headers_match(
            &table(&[("x-match", "any"), ("format", "pdf"), ("type", "log")]),
            Some(&msg)
        ));
        assert!(!headers_match(&table(&[("x-match", "any")]), Some(&msg)));
        assert!(headers_match(&table(&[]), None));
    }
}
