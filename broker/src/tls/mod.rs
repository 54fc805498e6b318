//! TLS for every listener, configured once (RabbitMQ's `ssl_options` under Bloodbank names):
//! a certificate chain and key, optionally a CA that client certificates must chain to.
//! `Tls` holds the current server configuration; `reload` swaps in new files without
//! touching connections already open, and keeps the old configuration when the new files are
//! bad. TLS 1.2 and 1.3 only.

mod http;
mod identity;

pub use http::{bind, spawn_app, Served, TlsListener};
pub use identity::{CertLoginFrom, PeerIdentity};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate, key and CA are, and how client certificates are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM: the server's certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
    /// PEM: the CAs client certificates must chain to.
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify the one they send (RabbitMQ's
    /// `verify = verify_peer`); needs `ca`.
    pub verify_peer: bool,
    /// Refuse clients that send no certificate (RabbitMQ's `fail_if_no_peer_cert`).
    pub fail_if_no_peer_cert: bool,
    /// Which part of a client certificate names the user for EXTERNAL.
    pub login_from: CertLoginFrom,
}

/// Why TLS could not be set up from the files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} file {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{what} file {path} holds no PEM {kind}")]
    Empty {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("CA file {path} holds a certificate that cannot be used")]
    BadCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("tls_verify_peer needs tls_ca, the CAs client certificates must chain to")]
    VerifyWithoutCa,
    #[error("tls_fail_if_no_peer_cert needs tls_verify_peer")]
    FailWithoutVerify,
    #[error("cannot verify client certificates with the CAs of {path}")]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("the certificate in {cert} does not go with the key in {key}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("certificate file {path} does not hold an X.509 certificate")]
    NotX509 { path: PathBuf },
}

/// A loaded configuration and what is known of its certificate.
struct Loaded {
    config: Arc<ServerConfig>,
    /// When the server's own certificate expires.
    not_after: SystemTime,
    /// The files' modification times when they were read.
    stamps: Vec<Option<SystemTime>>,
}

struct Inner {
    settings: TlsSettings,
    current: RwLock<Loaded>,
}

/// The current TLS configuration of every listener; cheap to clone.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

fn stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    [
        Some(&settings.cert),
        Some(&settings.key),
        settings.ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
    .collect()
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            kind: "certificate",
        });
    }
    Ok(certs)
}

fn load(settings: &TlsSettings) -> Result<Loaded, TlsError> {
    let stamps = stamps(settings);
    let chain = certificates("certificate", &settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "key",
            path: settings.key.clone(),
            kind: "private key",
        },
        source => TlsError::Read {
            what: "key",
            path: settings.key.clone(),
            source,
        },
    })?;
    let not_after = identity::not_after(&chain[0]).ok_or_else(|| TlsError::NotX509 {
        path: settings.cert.clone(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Mismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            source,
        })?;
    if settings.fail_if_no_peer_cert && !settings.verify_peer {
        return Err(TlsError::FailWithoutVerify);
    }
    let builder = match (settings.verify_peer, &settings.ca) {
        (false, _) => builder.with_no_client_auth(),
        (true, None) => return Err(TlsError::VerifyWithoutCa),
        (true, Some(ca)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates("CA", ca)? {
                roots.add(cert).map_err(|source| TlsError::BadCa {
                    path: ca.clone(),
                    source,
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.fail_if_no_peer_cert {
                true => verifier,
                false => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|source| TlsError::Verifier {
                path: ca.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Mismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
            source,
        })?;
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
        stamps,
    })
}

impl Tls {
    /// Reads the files; an error names the file that is wrong.
    pub fn load(settings: TlsSettings) -> Result<Tls, TlsError> {
        let loaded = load(&settings)?;
        Ok(Tls {
            inner: Arc::new(Inner {
                settings,
                current: RwLock::new(loaded),
            }),
        })
    }

    fn current(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.inner.current.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Accepts handshakes with the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().config.clone())
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.inner.settings
    }

    /// When the server certificate in use expires.
    pub fn not_after(&self) -> SystemTime {
        self.current().not_after
    }

    /// Reads the files again. New handshakes use them; open connections keep theirs. On an
    /// error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.inner.settings)?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Whether a file changed since it was last read.
    fn changed_on_disk(&self) -> bool {
        stamps(&self.inner.settings) != self.current().stamps
    }

    /// Reloads when `why` is a signal, or when the files changed; logs either way.
    fn reload_logged(&self, why: &str) {
        if why != "SIGHUP" && !self.changed_on_disk() {
            return;
        }
        match self.reload() {
            Ok(()) => tracing::info!(why, "TLS certificate and key reloaded"),
            Err(e) => tracing::error!(
                why,
                error = %ErrorChain(&e),
                "TLS files not reloaded; the previous certificate stays in use"
            ),
        }
    }

    /// Reloads on SIGHUP and when the files change (checked every two seconds), until
    /// shutdown. The files are read on a blocking thread, never on an async worker.
    pub fn watch(&self, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                let why = tokio::select! {
                    _ = hup => "SIGHUP",
                    _ = tick.tick() => "files changed",
                    _ = shutdown.changed() => break,
                };
                let tls = tls.clone();
                let _ = tokio::task::spawn_blocking(move || tls.reload_logged(why)).await;
            }
        })
    }
}

/// An error with its sources, for logs.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn settings(cert: PathBuf, key: PathBuf) -> TlsSettings {
        TlsSettings {
            cert,
            key,
            ca: None,
            verify_peer: false,
            fail_if_no_peer_cert: false,
            login_from: CertLoginFrom::DistinguishedName,
        }
    }

    #[test]
    fn bad_files_are_errors_that_name_them_and_reload_keeps_the_old_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), "a");
        let tls = Tls::load(settings(cert.clone(), key.clone())).unwrap();
        assert!(tls.not_after() > SystemTime::now());

        let missing = Tls::load(settings(dir.path().join("nope.crt"), key.clone())).unwrap_err();
        assert!(missing.to_string().contains("nope.crt"), "{missing}");
        std::fs::write(dir.path().join("junk.crt"), "not pem").unwrap();
        let junk = Tls::load(settings(dir.path().join("junk.crt"), key.clone())).unwrap_err();
        assert!(junk.to_string().contains("junk.crt"), "{junk}");
        let (_, other_key) = write_pair(dir.path(), "b");
        let mismatch = Tls::load(settings(cert.clone(), other_key)).unwrap_err();
        assert!(matches!(mismatch, TlsError::Mismatch { .. }), "{mismatch}");
        let no_ca = Tls::load(TlsSettings {
            verify_peer: true,
            ..settings(cert.clone(), key.clone())
        });
        assert!(matches!(no_ca.unwrap_err(), TlsError::VerifyWithoutCa));

        let before = tls.current().config.clone();
        std::fs::write(&cert, "broken").unwrap();
        assert!(tls.changed_on_disk() || cfg!(not(unix)));
        assert!(tls.reload().is_err());
        assert!(
            Arc::ptr_eq(&before, &tls.current().config),
            "the old one stays"
        );
    }
}
