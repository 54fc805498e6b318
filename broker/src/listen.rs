//! Where a listener listens: one or several `host:port`, comma-separated. A host name stands
//! for every address it resolves to (`localhost:5672` is `[::1]:5672` and `127.0.0.1:5672`),
//! as every server does; `[::]` also takes IPv4 connections where the system allows it.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use tokio::net::TcpListener;

/// One or more socket addresses to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(Vec<SocketAddr>);

/// Why a listen setting is not an address.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not host:port (several may be given, comma-separated)")]
pub struct ListenParseError {
    text: String,
    #[source]
    source: Option<io::Error>,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

impl BindError {
    /// True when another process holds the address.
    pub fn in_use(&self) -> bool {
        self.source.kind() == io::ErrorKind::AddrInUse
    }
}

impl Listen {
    /// Every address, in the order given, without repeats.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.0
    }

    /// Binds every address. Port 0 picks a free port once: the other addresses with port 0
    /// take the same one, so a host name resolving to IPv4 and IPv6 ends up on one port.
    pub async fn bind(&self) -> Result<Vec<TcpListener>, BindError> {
        let mut chosen = 0;
        let mut out = Vec::with_capacity(self.0.len());
        for addr in &self.0 {
            let mut addr = *addr;
            if addr.port() == 0 {
                addr.set_port(chosen);
            }
            let listener = match bind_one(addr).await {
                Ok(listener) => listener,
                // A machine without IPv6 still serves the rest of a list such as the default.
                Err(e) if self.0.len() > 1 && family_missing(&e) => {
                    tracing::warn!(%addr, error = %e, "not listening on this address");
                    continue;
                }
                Err(source) => return Err(BindError { addr, source }),
            };
            if chosen == 0 {
                chosen = listener
                    .local_addr()
                    .map_err(|source| BindError { addr, source })?
                    .port();
            }
            out.push(listener);
        }
        Ok(out)
    }

    /// No address: the listener is off.
    pub fn none() -> Listen {
        Listen(Vec::new())
    }

    /// Every address, IPv4 and IPv6, on `port`: the default of every listener.
    pub fn any(port: u16) -> Listen {
        Listen(vec![
            SocketAddr::from(([0, 0, 0, 0], port)),
            SocketAddr::from(([0u16; 8], port)),
        ])
    }

    /// The addresses `listeners` (from [`Listen::bind`]) are bound to.
    pub fn local_addrs(&self, listeners: &[TcpListener]) -> Result<Vec<SocketAddr>, BindError> {
        listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| BindError {
                addr: self.0[0],
                source,
            })
    }

    /// Binds and at once releases every address: tells early whether [`Listen::bind`] can
    /// succeed, before slow start-up steps.
    pub fn check(&self) -> Result<(), BindError> {
        for addr in &self.0 {
            if addr.port() == 0 {
                continue;
            }
            match std::net::TcpListener::bind(addr) {
                Ok(_) => {}
                Err(e) if self.0.len() > 1 && family_missing(&e) => {}
                Err(source) => {
                    return Err(BindError {
                        addr: *addr,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

fn family_missing(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT) | Some(libc::EADDRNOTAVAIL)
    )
}

/// An IPv6 wildcard also takes IPv4 where the system allows it; when `[::]` and `0.0.0.0`
/// are both given, the IPv6 socket is made IPv6-only so that both can be bound.
async fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => {
            let socket = tokio::net::TcpSocket::new_v6()?;
            set_v6_only(&socket)?;
            socket
        }
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// IPV6_V6ONLY on: every IPv4 address we listen on is listed on its own.
fn set_v6_only(socket: &tokio::net::TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

impl FromStr for Listen {
    type Err = ListenParseError;

    fn from_str(text: &str) -> Result<Listen, ListenParseError> {
        let fail = |source| ListenParseError {
            text: text.to_string(),
            source,
        };
        let mut out: Vec<SocketAddr> = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(fail(None));
            }
            let resolved: Vec<SocketAddr> = match part.parse::<SocketAddr>() {
                Ok(addr) => vec![addr],
                Err(_) => part.to_socket_addrs().map_err(|e| fail(Some(e)))?.collect(),
            };
            if resolved.is_empty() {
                return Err(fail(None));
            }
            for addr in resolved {
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
        Ok(Listen(out))
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen(vec![addr])
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{addr}")?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A listener that may be switched off: `off`, or addresses as for `Listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switch {
    Off,
    On(Listen),
}

impl Switch {
    /// The addresses, or None when off.
    pub fn on(self) -> Option<Listen> {
        match self {
            Switch::Off => None,
            Switch::On(listen) => Some(listen),
        }
    }
}

impl FromStr for Switch {
    type Err = ListenParseError;

    fn from_str(text: &str) -> Result<Switch, ListenParseError> {
        match text.trim() {
            "off" => Ok(Switch::Off),
            _ => text.parse().map(Switch::On),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Switch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Switch, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_off_or_addresses() {
        assert_eq!("off".parse::<Switch>().unwrap(), Switch::Off);
        let on = "127.0.0.1:5671".parse::<Switch>().unwrap().on().unwrap();
        assert_eq!(on.addrs().len(), 1);
        assert!("nowhere".parse::<Switch>().is_err());
    }

    #[test]
    fn addresses_host_names_and_lists() {
        let one: Listen = "127.0.0.1:5672".parse().unwrap();
        assert_eq!(one.addrs(), &["127.0.0.1:5672".parse().unwrap()]);
        let local: Listen = "localhost:5672".parse().unwrap();
        assert!(local
            .addrs()
            .contains(&"127.0.0.1:5672".parse::<SocketAddr>().unwrap()));
        let both: Listen = "127.0.0.1:1, [::1]:1, 127.0.0.1:1".parse().unwrap();
        assert_eq!(both.addrs().len(), 2);
        assert_eq!(both.to_string(), "127.0.0.1:1,[::1]:1");
        for bad in ["", "5672", "127.0.0.1:1,", "no-such-host.invalid:1", "a:b"] {
            assert!(bad.parse::<Listen>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn port_zero_is_one_port_for_every_address() {
        let listen: Listen = "127.0.0.1:0,[::1]:0".parse().unwrap();
        let Ok(bound) = listen.bind().await else {
            return; // no IPv6 loopback on this machine
        };
        let ports: Vec<u16> = bound
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports[0], ports[1]);
        let err = Listen::from(bound[0].local_addr().unwrap())
            .check()
            .unwrap_err();
        assert!(err.in_use());
    }
}
