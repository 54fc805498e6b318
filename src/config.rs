//! Configuration: flags, `BLOODBANK_*` environment variables and an optional TOML file with
//! the same keys. A flag or variable wins over the file, the file over the defaults.

use anyhow::Context;
use bloodbank_broker::tls::{CertLoginFrom, Tls, TlsSettings};
use bloodbank_broker::{BrokerConfig, ExchangeDecl, Listen, Switch, SEGMENT_BYTES};
use bloodbank_gateway::{ApiKey, Auth, GatewayConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the keys below, and exchanges, max_message_size, segment_bytes,
    /// message_memory, max_queues, consumer_max_per_channel.
    #[arg(long, env = "BLOODBANK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where state is kept [default: ./data].
    #[arg(long, env = "BLOODBANK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// AMQP listener: host:port, several comma-separated, or off (AMQP over TLS only); port 0
    /// picks a free port [default: 0.0.0.0:5672,[::]:5672].
    #[arg(long, env = "BLOODBANK_AMQP_LISTEN")]
    pub amqp_listen: Option<Switch>,
    /// Once every listener is up, write their addresses here as JSON.
    #[arg(long, env = "BLOODBANK_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Block publishers while the process uses more memory than this many bytes
    /// [default: 40% of the machine's memory].
    #[arg(long, env = "BLOODBANK_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<u64>,
    /// Block publishers while the data directory's disk has less free space than this many
    /// bytes [default: 50000000].
    #[arg(long, env = "BLOODBANK_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<u64>,
    /// Most AMQP connections open at once; more are refused at connection.open with 530
    /// (RabbitMQ's connection_max) [default: no limit].
    #[arg(long, env = "BLOODBANK_CONNECTION_MAX")]
    pub connection_max: Option<usize>,
    /// Most channels one AMQP connection may open (offered in connection.tune)
    /// [default: 2047].
    #[arg(long, env = "BLOODBANK_CHANNEL_MAX")]
    pub channel_max: Option<u16>,
    /// HTTP gateway listener, like --amqp-listen [default: 0.0.0.0:8000,[::]:8000].
    #[arg(long, env = "BLOODBANK_GATEWAY_LISTEN")]
    pub gateway_listen: Option<Listen>,
    /// A directory of event contracts to validate against instead of the ones built into the
    /// binary, reloaded when its files change.
    #[arg(long, env = "BLOODBANK_SCHEMAS")]
    pub schemas: Option<PathBuf>,
    /// Publish event types without a contract (with a warning header) instead of 404.
    #[arg(long, env = "BLOODBANK_ALLOW_UNREGISTERED")]
    pub allow_unregistered: bool,
    /// Serve HTTP callers without an API key from anywhere, not only from loopback (when no
    /// `api_keys` are configured).
    #[arg(long, env = "BLOODBANK_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Webhook subscriptions may target only these hosts (`host` or `host:port`,
    /// comma-separated) [default: any, loopback and private networks included].
    #[arg(long, env = "BLOODBANK_WEBHOOK_ALLOW", value_delimiter = ',')]
    pub webhook_allow: Vec<String>,
    /// Publish to this external AMQP broker instead of running the embedded one; the nodes
    /// of a RabbitMQ cluster as several comma-separated URLs (the first that answers is used,
    /// the next takes over when it goes away).
    #[arg(long, env = "BLOODBANK_BROKER_URL", hide_env_values = true)]
    pub broker_url: Option<String>,
    /// Keep correlation links in Redis (the original service's keys) instead of the data dir,
    /// and share idempotency keys there with the other gateway instances that use it.
    #[arg(long, env = "BLOODBANK_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Speech-to-text listener (`/asr` and its page), like --amqp-listen
    /// [default: 0.0.0.0:8888,[::]:8888].
    #[arg(long, env = "BLOODBANK_SPEECH_LISTEN")]
    pub speech_listen: Option<Listen>,
    /// Management listener (RabbitMQ's HTTP API under `/api`, Prometheus `/metrics`, the
    /// dashboard at `/`), like --amqp-listen [default: 0.0.0.0:15672,[::]:15672].
    #[arg(long, env = "BLOODBANK_MANAGEMENT_LISTEN")]
    pub management_listen: Option<Listen>,
    /// STOMP 1.0-1.2 over TCP, like --amqp-listen [default: 0.0.0.0:61613,[::]:61613].
    #[arg(long, env = "BLOODBANK_STOMP_LISTEN")]
    pub stomp_listen: Option<Listen>,
    /// STOMP over WebSocket at `/ws` (Web-STOMP, what browser clients use), like
    /// --amqp-listen [default: 0.0.0.0:15674,[::]:15674].
    #[arg(long, env = "BLOODBANK_STOMP_WS_LISTEN")]
    pub stomp_ws_listen: Option<Listen>,
    /// Most speech sessions (`/asr` WebSockets) at once; one more is told to try again later
    /// [default: 32].
    #[arg(long, env = "BLOODBANK_SPEECH_MAX_SESSIONS")]
    pub speech_max_sessions: Option<usize>,
    /// Where `bloodbank speech install-model` put the models [default: DATA_DIR/models].
    #[arg(long, env = "BLOODBANK_MODELS")]
    pub models: Option<PathBuf>,
    /// POST each final transcript here too (n8n-style webhook, http:// only).
    #[arg(long, env = "BLOODBANK_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// The Whisper model speech uses: tiny.en or base [default: tiny.en].
    #[arg(long, env = "BLOODBANK_SPEECH_MODEL")]
    pub speech_model: Option<String>,
    /// Install the Whisper model first if it is not there yet (minutes, once; after the
    /// listen addresses are checked).
    #[arg(long, env = "BLOODBANK_INSTALL_MODEL")]
    pub install_model: bool,
    /// PEM certificate chain for TLS; with it (and --tls-key) the TLS listeners below start.
    /// Re-read on SIGHUP and when the file changes.
    #[arg(long, env = "BLOODBANK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, env = "BLOODBANK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to.
    #[arg(long, env = "BLOODBANK_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Ask TLS clients for a certificate and verify it (RabbitMQ's verify_peer; needs
    /// --tls-ca); a verified certificate can log in to AMQP with EXTERNAL.
    #[arg(long, env = "BLOODBANK_TLS_VERIFY_PEER")]
    pub tls_verify_peer: bool,
    /// Refuse TLS clients without a certificate (RabbitMQ's fail_if_no_peer_cert).
    #[arg(long, env = "BLOODBANK_TLS_FAIL_IF_NO_PEER_CERT")]
    pub tls_fail_if_no_peer_cert: bool,
    /// The user an EXTERNAL login is: the client certificate's distinguished_name or its
    /// common_name [default: distinguished_name].
    #[arg(long, env = "BLOODBANK_SSL_CERT_LOGIN_FROM")]
    pub ssl_cert_login_from: Option<CertLoginFrom>,
    /// AMQP over TLS, like --amqp-listen, or off [default with a certificate:
    /// 0.0.0.0:5671,[::]:5671].
    #[arg(long, env = "BLOODBANK_AMQPS_LISTEN")]
    pub amqps_listen: Option<Switch>,
    /// STOMP over TLS, or off [default with a certificate: 0.0.0.0:61614,[::]:61614].
    #[arg(long, env = "BLOODBANK_STOMPS_LISTEN")]
    pub stomps_listen: Option<Switch>,
    /// Web-STOMP over TLS (wss://HOST:PORT/ws), or off [default with a certificate:
    /// 0.0.0.0:15673,[::]:15673].
    #[arg(long, env = "BLOODBANK_STOMP_WSS_LISTEN")]
    pub stomp_wss_listen: Option<Switch>,
    /// The management API over HTTPS, or off [default with a certificate:
    /// 0.0.0.0:15671,[::]:15671].
    #[arg(long, env = "BLOODBANK_MANAGEMENT_TLS_LISTEN")]
    pub management_tls_listen: Option<Switch>,
    /// The HTTP gateway over HTTPS, or off [default with a certificate: 0.0.0.0:8443,[::]:8443].
    #[arg(long, env = "BLOODBANK_GATEWAY_TLS_LISTEN")]
    pub gateway_tls_listen: Option<Switch>,
    /// Speech over HTTPS and wss://, or off [default with a certificate:
    /// 0.0.0.0:8889,[::]:8889].
    #[arg(long, env = "BLOODBANK_SPEECH_TLS_LISTEN")]
    pub speech_tls_listen: Option<Switch>,
}

/// The largest `max_message_size` accepted (512 MiB, as RabbitMQ).
const MAX_MESSAGE_SIZE_LIMIT: u64 = 512 * 1024 * 1024;

/// The file's form: the same keys as the flags, plus the exchanges to declare at start.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    amqp_listen: Option<Switch>,
    ready_file: Option<PathBuf>,
    exchanges: Option<Vec<FileExchange>>,
    max_message_size: Option<u64>,
    connection_max: Option<usize>,
    channel_max: Option<u16>,
    memory_high_watermark: Option<u64>,
    disk_free_limit: Option<u64>,
    /// Message log segment size in bytes.
    segment_bytes: Option<u64>,
    /// Body bytes of ready messages kept in memory before persistent ones are read back from
    /// the log instead.
    message_memory: Option<u64>,
    /// Most queues in each vhost (406 on the declare past it).
    max_queues: Option<usize>,
    /// Most consumers on one AMQP channel (530 on the consume past it).
    consumer_max_per_channel: Option<usize>,
    gateway_listen: Option<Listen>,
    schemas: Option<PathBuf>,
    allow_unregistered: Option<bool>,
    /// Largest HTTP request body in bytes.
    gateway_body_limit: Option<usize>,
    /// Seconds a request body may take to arrive (408 beyond).
    gateway_body_timeout_secs: Option<u64>,
    /// Seconds an Idempotency-Key is remembered.
    idempotency_window_secs: Option<u64>,
    /// Seconds correlation links are kept.
    correlation_ttl_secs: Option<u64>,
    allow_anonymous: Option<bool>,
    webhook_allow: Option<Vec<String>>,
    broker_url: Option<String>,
    redis_url: Option<String>,
    speech_listen: Option<Listen>,
    management_listen: Option<Listen>,
    stomp_listen: Option<Listen>,
    stomp_ws_listen: Option<Listen>,
    speech_max_sessions: Option<usize>,
    models: Option<PathBuf>,
    webhook_url: Option<String>,
    speech_model: Option<String>,
    /// Parallel transcriptions (each one inference thread).
    speech_workers: Option<usize>,
    /// `[[api_keys]]` with `name`, `key` and `patterns` (topic patterns of the event types the
    /// key may publish).
    api_keys: Option<Vec<FileApiKey>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_verify_peer: Option<bool>,
    tls_fail_if_no_peer_cert: Option<bool>,
    #[serde(default, deserialize_with = "login_from")]
    ssl_cert_login_from: Option<CertLoginFrom>,
    amqps_listen: Option<Switch>,
    stomps_listen: Option<Switch>,
    stomp_wss_listen: Option<Switch>,
    management_tls_listen: Option<Switch>,
    gateway_tls_listen: Option<Switch>,
    speech_tls_listen: Option<Switch>,
}

fn login_from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CertLoginFrom>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileApiKey {
    name: String,
    key: String,
    patterns: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileExchange {
    name: String,
    #[serde(rename = "type", default = "topic")]
    kind: String,
}

fn topic() -> String {
    "topic".into()
}

/// Everything `serve` needs, resolved.
#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub ready_file: Option<PathBuf>,
    pub broker: BrokerConfig,
    pub gateway: GatewayConfig,
    /// None: the contracts built into the binary.
    pub schemas: Option<PathBuf>,
    pub broker_url: Option<String>,
    pub speech_listen: Listen,
    pub management_listen: Listen,
    pub speech_workers: usize,
    pub speech_max_sessions: usize,
    pub models: PathBuf,
    pub webhook_url: Option<String>,
    pub speech_model: String,
    pub install_model: bool,
    /// The certificate of every TLS listener; None: no TLS.
    pub tls: Option<Tls>,
    /// HTTPS for the management API (with `tls`).
    pub management_tls_listen: Option<Listen>,
    /// HTTPS and wss:// for speech (with `tls`).
    pub speech_tls_listen: Option<Listen>,
}

fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The broker a client command talks to: `given` (`--amqp`), else [`local_amqp_url`].
pub fn amqp_url(given: Option<&str>, config: Option<&Path>) -> anyhow::Result<String> {
    match given {
        Some(url) => Ok(url.to_string()),
        None => local_amqp_url(config),
    }
}

/// The AMQP URL at which a client on this machine reaches the broker of a `serve` with this
/// configuration (flag, environment, then file): its `broker_url` when it publishes to an
/// external broker, else its AMQP listener as guest, a wildcard address meaning loopback.
pub fn local_amqp_url(config: Option<&Path>) -> anyhow::Result<String> {
    let file = read_file(config)?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(url) = env("BLOODBANK_BROKER_URL").or(file.broker_url) {
        return Ok(url);
    }
    let listen = match env("BLOODBANK_AMQP_LISTEN") {
        Some(text) => text.parse::<Switch>().context("BLOODBANK_AMQP_LISTEN")?,
        None => (file.amqp_listen).unwrap_or_else(|| Switch::On(Listen::any(5672))),
    };
    let Some(listen) = listen.on() else {
        anyhow::bail!("plain AMQP is off (--amqp-listen off): give the command --url amqps://…");
    };
    let addr = listen.addrs()[0];
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    Ok(format!("amqp://guest:guest@{host}:{}/%2f", addr.port()))
}

/// TLS from the settings: None without a certificate; the files are read now, so a bad one
/// stops the start with an error naming it.
fn tls(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<Option<Tls>> {
    let cert = args.tls_cert.clone().or(file.tls_cert.clone());
    let key = args.tls_key.clone().or(file.tls_key.clone());
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (BLOODBANK_TLS_KEY)"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (BLOODBANK_TLS_CERT)"),
    };
    let settings = TlsSettings {
        cert,
        key,
        ca: args.tls_ca.clone().or(file.tls_ca.clone()),
        verify_peer: args.tls_verify_peer || file.tls_verify_peer.unwrap_or(false),
        fail_if_no_peer_cert: args.tls_fail_if_no_peer_cert
            || file.tls_fail_if_no_peer_cert.unwrap_or(false),
        login_from: args
            .ssl_cert_login_from
            .or(file.ssl_cert_login_from)
            .unwrap_or_default(),
    };
    Ok(Some(Tls::load(settings).context("TLS")?))
}

/// A TLS listener's addresses: the setting, else `default_port` on every address; None when
/// switched off or without a certificate.
fn tls_listen(
    tls: &Option<Tls>,
    flag: Option<Switch>,
    file: Option<Switch>,
    default_port: u16,
) -> Option<Listen> {
    tls.as_ref()?;
    flag.or(file)
        .unwrap_or_else(|| Switch::On(Listen::any(default_port)))
        .on()
}

pub fn load(args: ServeArgs) -> anyhow::Result<Settings> {
    let file = read_file(args.config.as_deref())?;
    let tls = tls(&args, &file)?;
    let mut broker = BrokerConfig {
        amqps_listen: tls_listen(&tls, args.amqps_listen, file.amqps_listen, 5671),
        stomps_listen: tls_listen(&tls, args.stomps_listen, file.stomps_listen, 61614),
        stomp_wss_listen: tls_listen(&tls, args.stomp_wss_listen, file.stomp_wss_listen, 15673),
        tls: tls.clone(),
        ..Default::default()
    };
    if let Some(switch) = args.amqp_listen.or(file.amqp_listen) {
        broker.amqp_listen = switch.on().unwrap_or_else(Listen::none);
    }
    broker.stomp_listen = Some(
        args.stomp_listen
            .or(file.stomp_listen)
            .unwrap_or_else(|| Listen::any(61613)),
    );
    broker.stomp_ws_listen = Some(
        args.stomp_ws_listen
            .or(file.stomp_ws_listen)
            .unwrap_or_else(|| Listen::any(15674)),
    );
    if let Some(exchanges) = file.exchanges {
        broker.exchanges = exchanges
            .into_iter()
            .map(|e| ExchangeDecl {
                name: e.name,
                kind: e.kind,
            })
            .collect();
    }
    if let Some(max) = file.max_message_size {
        // RabbitMQ's own ceiling; the message log's records hold bodies up to 1 GiB.
        if max > MAX_MESSAGE_SIZE_LIMIT {
            anyhow::bail!(
                "max_message_size {max} is above the limit of {MAX_MESSAGE_SIZE_LIMIT} bytes"
            );
        }
        broker.limits.max_message_size = max;
    }
    broker.connection_max = args.connection_max.or(file.connection_max);
    if let Some(max) = args.channel_max.or(file.channel_max) {
        broker.channel_max = max;
    }
    if let Some(m) = args.memory_high_watermark.or(file.memory_high_watermark) {
        broker.memory_high_watermark = m;
    }
    if let Some(d) = args.disk_free_limit.or(file.disk_free_limit) {
        broker.disk_free_limit = d;
    }
    if let Some(s) = file.segment_bytes {
        if !SEGMENT_BYTES.contains(&s) {
            anyhow::bail!(
                "segment_bytes {s} is outside {}..={} (the message log's index keeps offsets \
                 in 32 bits)",
                SEGMENT_BYTES.start(),
                SEGMENT_BYTES.end()
            );
        }
        broker.segment_bytes = s;
    }
    if let Some(m) = file.message_memory {
        broker.limits.resident_bytes = m;
    }
    broker.limits.max_queues = file.max_queues;
    broker.limits.consumer_max_per_channel = file.consumer_max_per_channel;
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./data"));
    broker.data_dir = Some(data_dir.clone());
    let mut gateway = GatewayConfig {
        data_dir: Some(data_dir.clone()),
        allow_unregistered: args.allow_unregistered || file.allow_unregistered.unwrap_or(false),
        ..GatewayConfig::default()
    };
    gateway.auth = Auth {
        keys: file
            .api_keys
            .unwrap_or_default()
            .into_iter()
            .map(|k| ApiKey {
                name: k.name,
                key: k.key,
                patterns: k.patterns,
            })
            .collect(),
        allow_anonymous: args.allow_anonymous || file.allow_anonymous.unwrap_or(false),
    };
    gateway.redis_url = args.redis_url.or(file.redis_url);
    gateway.webhook_allow = match args.webhook_allow.is_empty() {
        true => file.webhook_allow.unwrap_or_default(),
        false => args.webhook_allow,
    };
    if let Some(addr) = args.gateway_listen.or(file.gateway_listen) {
        gateway.listen = addr;
    }
    gateway.tls_listen = tls_listen(&tls, args.gateway_tls_listen, file.gateway_tls_listen, 8443);
    gateway.tls = tls.clone();
    if let Some(secs) = file.gateway_body_timeout_secs {
        gateway.body_timeout = std::time::Duration::from_secs(secs.max(1));
    }
    if let Some(limit) = file.gateway_body_limit {
        gateway.body_limit = limit;
    }
    if let Some(secs) = file.idempotency_window_secs {
        gateway.idempotency_window = std::time::Duration::from_secs(secs);
    }
    if let Some(secs) = file.correlation_ttl_secs {
        gateway.correlation_ttl = std::time::Duration::from_secs(secs);
    }
    let models = args
        .models
        .or(file.models)
        .unwrap_or_else(|| data_dir.join("models"));
    Ok(Settings {
        data_dir,
        ready_file: args.ready_file.or(file.ready_file),
        broker,
        gateway,
        schemas: args.schemas.or(file.schemas),
        broker_url: args.broker_url.or(file.broker_url),
        speech_listen: args
            .speech_listen
            .or(file.speech_listen)
            .unwrap_or_else(|| Listen::any(8888)),
        management_listen: args
            .management_listen
            .or(file.management_listen)
            .unwrap_or_else(|| Listen::any(15672)),
        speech_workers: file.speech_workers.unwrap_or(2),
        speech_max_sessions: args
            .speech_max_sessions
            .or(file.speech_max_sessions)
            .unwrap_or(32),
        models,
        webhook_url: args.webhook_url.or(file.webhook_url),
        speech_model: args
            .speech_model
            .or(file.speech_model)
            .unwrap_or_else(|| "tiny.en".into()),
        install_model: args.install_model,
        management_tls_listen: tls_listen(
            &tls,
            args.management_tls_listen,
            file.management_tls_listen,
            15671,
        ),
        speech_tls_listen: tls_listen(&tls, args.speech_tls_listen, file.speech_tls_listen, 8889),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = std::env::temp_dir().join(format!("bb-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bloodbank.toml");
        std::fs::write(
            &path,
            "amqp_listen = \"127.0.0.1:6000\"\ndata_dir = \"/tmp/x\"\n[[exchanges]]\nname = \"only\"\n",
        )
        .unwrap();
        let s = load(ServeArgs {
            config: Some(path.clone()),
            amqp_listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.broker.amqp_listen.addrs()[0].port(), 7000);
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.broker.exchanges.len(), 1);
        assert_eq!(s.broker.exchanges[0].kind, "topic");

        std::fs::write(&path, "amqp_listn = \"x\"\n").unwrap();
        let err = load(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("amqp_listn"));
    }

    #[test]
    fn a_max_message_size_beyond_the_limit_is_refused() {
        let dir = std::env::temp_dir().join(format!("bb-config-max-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bloodbank.toml");
        std::fs::write(&path, "max_message_size = 2147483648\n").unwrap();
        let err = load(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("max_message_size"));
    }
}

#[cfg(test)]
mod readme {
    use super::ServeArgs;
    use clap::Args;

    /// The README's table of `serve` settings, as the CLI definition makes it.
    fn settings_table() -> String {
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut out =
            String::from("| flag | environment variable | what it sets |\n|---|---|---|\n");
        for arg in command.get_arguments() {
            let (Some(long), Some(env)) = (arg.get_long(), arg.get_env()) else {
                continue;
            };
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let help = help.trim_end_matches('.').replace('\n', " ");
            out.push_str(&format!(
                "| `--{long}` | `{}` | {help} |\n",
                env.to_string_lossy()
            ));
        }
        out
    }

    #[test]
    fn the_readme_lists_every_setting_of_serve() {
        let readme = include_str!("../README.md");
        let begin =
            "<!-- serve-settings: generated from the CLI definition; src/config.rs checks it -->\n";
        let start = readme.find(begin).expect("README has the settings marker") + begin.len();
        let end = readme[start..]
            .find("<!-- /serve-settings -->")
            .expect("README closes the settings table")
            + start;
        let expected = settings_table();
        assert!(
            readme[start..end] == expected,
            "README's settings table is out of date; put this between the markers:\n{expected}"
        );
    }
}
