//! STOMP transactions: BEGIN opens one, the SENDs, ACKs and NACKs naming it are held until
//! COMMIT hands them back in order, ABORT drops them. What one connection may hold is bounded
//! by a count of open transactions and by bytes over all of them. Pure state, no I/O.

use super::frame::{Frame, Refused};
use std::collections::HashMap;

/// Most transactions open at once on one connection.
const MAX_OPEN: usize = 64;
/// Most bytes (bodies and headers) held over all of a connection's open transactions.
pub(crate) const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

fn refused(message: &'static str, body: String) -> Refused {
    Refused::new(message, body)
}

fn invalid(tx: &str) -> Refused {
    refused(
        "Bad transaction",
        format!("Invalid transaction identifier: \"{tx}\""),
    )
}

#[derive(Debug, Default)]
pub(crate) struct Transactions {
    open: HashMap<String, Vec<Frame>>,
    held_bytes: usize,
}

fn size(frame: &Frame) -> usize {
    frame.body.len()
        + frame
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
}

impl Transactions {
    pub(crate) fn begin(&mut self, tx: &str) -> Result<(), Refused> {
        if self.open.contains_key(tx) {
            return Err(refused(
                "Bad transaction",
                format!("Transaction '{tx}' is already open"),
            ));
        }
        if self.open.len() >= MAX_OPEN {
            return Err(refused(
                "Too many transactions",
                format!("At most {MAX_OPEN} transactions at once"),
            ));
        }
        self.open.insert(tx.to_string(), Vec::new());
        Ok(())
    }

    /// Holds a frame of transaction `tx` (its `transaction` and `receipt` headers removed).
    pub(crate) fn hold(&mut self, tx: &str, mut frame: Frame) -> Result<(), Refused> {
        let Some(held) = self.open.get_mut(tx) else {
            return Err(invalid(tx));
        };
        frame
            .headers
            .retain(|(k, _)| k != "transaction" && k != "receipt");
        let bytes = size(&frame);
        if self.held_bytes + bytes > MAX_HELD_BYTES {
            return Err(refused(
                "Transaction too large",
                format!("Open transactions may hold at most {MAX_HELD_BYTES} bytes"),
            ));
        }
        self.held_bytes += bytes;
        held.push(frame);
        Ok(())
    }

    /// Closes `tx` and hands back its frames in the order they came.
    pub(crate) fn commit(&mut self, tx: &str) -> Result<Vec<Frame>, Refused> {
        let held = self.open.remove(tx).ok_or_else(|| invalid(tx))?;
        self.held_bytes -= held.iter().map(size).sum::<usize>();
        Ok(held)
    }

    pub(crate) fn abort(&mut self, tx: &str) -> Result<(), Refused> {
        self.commit(tx).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn send(body: usize) -> Frame {
        Frame::new("SEND")
            .with("transaction", "t")
            .with("receipt", "r")
            .with_body(Bytes::from(vec![b'x'; body]))
    }

    #[test]
    fn frames_come_back_in_order_without_their_transaction_headers() {
        let mut t = Transactions::default();
        t.begin("t").unwrap();
        assert_eq!(t.begin("t").unwrap_err().message, "Bad transaction");
        t.hold("t", send(1)).unwrap();
        t.hold("t", send(2)).unwrap();
        let held = t.commit("t").unwrap();
        assert_eq!(
            held.iter().map(|f| f.body.len()).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(held.iter().all(|f| f.headers.is_empty()));
        assert_eq!(t.held_bytes, 0);
        assert_eq!(t.commit("t").unwrap_err(), invalid("t"));
        assert_eq!(t.hold("u", send(1)).unwrap_err(), invalid("u"));
    }

    #[test]
    fn what_is_held_is_bounded_by_bytes_and_abort_gives_them_back() {
        let mut t = Transactions::default();
        t.begin("t").unwrap();
        let big = MAX_HELD_BYTES / 4 + 1;
        for _ in 0..3 {
            t.hold("t", send(big)).unwrap();
        }
        let refused = t.hold("t", send(big)).unwrap_err();
        assert_eq!(refused.message, "Transaction too large");
        t.abort("t").unwrap();
        assert_eq!(t.held_bytes, 0);
        t.begin("t").unwrap();
        t.hold("t", send(big)).unwrap();
    }

    #[test]
    fn open_transactions_are_bounded() {
        let mut t = Transactions::default();
        for i in 0..MAX_OPEN {
            t.begin(&i.to_string()).unwrap();
        }
        assert_eq!(
            t.begin("one more").unwrap_err().message,
            "Too many transactions"
        );
    }
}
