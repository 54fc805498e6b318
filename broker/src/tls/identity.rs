//! Who a client certificate names, for the EXTERNAL login (as RabbitMQ's
//! `rabbitmq_auth_mechanism_ssl`): its subject's distinguished name (RFC 4514: the last
//! relative name first, `CN=client,O=Acme,C=DE`) or its common name.

use rustls_pki_types::CertificateDer;
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which part of a client certificate is the user name (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertLoginFrom {
    #[default]
    DistinguishedName,
    CommonName,
}

impl FromStr for CertLoginFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "distinguished_name" => Ok(CertLoginFrom::DistinguishedName),
            "common_name" => Ok(CertLoginFrom::CommonName),
            other => Err(format!(
                "'{other}' is not distinguished_name or common_name"
            )),
        }
    }
}

/// The names a verified client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub distinguished_name: String,
    pub common_name: Option<String>,
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl PeerIdentity {
    pub fn of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
        let registry = x509_parser::objects::oid_registry();
        let mut parts = Vec::new();
        let mut common_name = None;
        for rdn in cert
            .subject()
            .iter_rdn()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let mut attrs = Vec::new();
            for attr in rdn.iter() {
                let oid = attr.attr_type();
                let name = x509_parser::objects::oid2abbrev(oid, registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| oid.to_id_string());
                let value = attr.as_str().ok()?.to_string();
                if name == "CN" && common_name.is_none() {
                    common_name = Some(value.clone());
                }
                attrs.push(format!("{name}={}", escape(&value)));
            }
            parts.push(attrs.join("+"));
        }
        Some(PeerIdentity {
            distinguished_name: parts.join(","),
            common_name,
        })
    }

    /// The user name EXTERNAL logs in as.
    pub fn login(&self, from: CertLoginFrom) -> Option<&str> {
        match from {
            CertLoginFrom::DistinguishedName => Some(&self.distinguished_name),
            CertLoginFrom::CommonName => self.common_name.as_deref(),
        }
    }
}

/// When a certificate stops being valid.
pub(crate) fn not_after(cert: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let secs = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    #[test]
    fn names_come_from_the_subject_last_name_first() {
        let mut params = CertificateParams::new(vec![]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "DE");
        dn.push(DnType::OrganizationName, "Acme, Inc");
        dn.push(DnType::CommonName, "client-1");
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = PeerIdentity::of(cert.der()).unwrap();
        assert_eq!(id.distinguished_name, "CN=client-1,O=Acme\\, Inc,C=DE");
        assert_eq!(id.login(CertLoginFrom::CommonName), Some("client-1"));
        assert_eq!(
            id.login(CertLoginFrom::DistinguishedName),
            Some(id.distinguished_name.as_str())
        );
        assert!(not_after(cert.der()).unwrap() > SystemTime::now());
        assert!("common_name".parse::<CertLoginFrom>().is_ok());
        assert!("cn".parse::<CertLoginFrom>().is_err());
    }
}
