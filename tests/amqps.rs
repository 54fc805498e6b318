//! lapin over amqps against an in-process broker: certificates made here with rcgen (a CA, the
//! server's for `localhost`, a client's), a confirmed publish and its consumption over TLS,
//! EXTERNAL with the client certificate, and a client that does not trust the CA refused.

mod common;

use bloodbank_broker::definitions::{PermissionDef, UserDef};
use bloodbank_broker::tls::{CertLoginFrom, Tls, TlsSettings};
use bloodbank_broker::{Broker, BrokerConfig};
use common::{consume, declare_queue, next};
use lapin::options::*;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::Path;

struct Pki {
    ca_pem: String,
    client: (String, String),
}

/// Writes the server's certificate and key into `dir`; returns the CA and a client's.
fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(vec![]).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(vec![]).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "lapin-client");
    let client = client.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        client: (client.pem(), client_key.serialize_pem()),
    }
}

async fn broker(dir: &Path) -> Broker {
    let tls = Tls::load(TlsSettings {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        ca: Some(dir.join("ca.crt")),
        verify_peer: true,
        fail_if_no_peer_cert: false,
        login_from: CertLoginFrom::CommonName,
    })
    .unwrap();
    let broker = common::broker_with(BrokerConfig {
        tls: Some(tls),
        amqps_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    })
    .await;
    let admin = broker.admin();
    let user = UserDef {
        name: "lapin-client".into(),
        password_hash: String::new(),
        hashing_algorithm: String::new(),
        tags: vec![],
        limits: serde_json::json!({}),
    };
    admin.put_user(user, None).await.unwrap();
    let all = ".*".to_string();
    let permission = PermissionDef {
        user: "lapin-client".into(),
        vhost: "/".into(),
        configure: all.clone(),
        write: all.clone(),
        read: all,
    };
    admin.put_permission(permission).await.unwrap();
    broker
}

async fn connect(url: &str, tls: OwnedTLSConfig) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_with_config(url, ConnectionProperties::default(), tls, runtime).await
}

async fn round_trip(conn: &Connection) -> Vec<u8> {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let q = declare_queue(&ch, "").await;
    let confirm = ch
        .basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"lapin over tls",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let mut consumer = consume(&ch, &q, false).await;
    let delivery = next(&mut consumer).await;
    delivery.ack(BasicAckOptions::default()).await.unwrap();
    delivery.data
}

#[tokio::test]
async fn lapin_publishes_and_consumes_over_amqps_with_plain_and_external_logins() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let broker = broker(dir.path()).await;
    let port = broker.listening("amqp/ssl")[0].port();
    let trusting = OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pki.ca_pem.clone()),
    };
    let conn = connect(
        &format!("amqps://guest:guest@localhost:{port}/%2f"),
        trusting,
    )
    .await
    .expect("amqps with the CA");
    assert_eq!(round_trip(&conn).await, b"lapin over tls");
    conn.close(200, "bye".into()).await.unwrap();

    let with_certificate = OwnedTLSConfig {
        identity: Some(OwnedIdentity::PKCS8 {
            pem: pki.client.0.clone().into_bytes(),
            key: pki.client.1.clone().into_bytes(),
        }),
        cert_chain: Some(pki.ca_pem.clone()),
    };
    let url = format!("amqps://localhost:{port}/%2f?auth_mechanism=external");
    let conn = connect(&url, with_certificate)
        .await
        .expect("EXTERNAL with the client certificate");
    assert_eq!(round_trip(&conn).await, b"lapin over tls");
    conn.close(200, "bye".into()).await.unwrap();

    // A client that does not trust the CA (its own trust store has never heard of it).
    let distrusting = OwnedTLSConfig::default();
    let refused = connect(
        &format!("amqps://guest:guest@localhost:{port}/%2f"),
        distrusting,
    )
    .await;
    assert!(refused.is_err());
    broker.shutdown().await;
}
