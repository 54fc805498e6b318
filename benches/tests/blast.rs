//! `amqp_blast` against a real in-process broker: its hand-made handshake and frames are
//! understood, the counters count what the broker did, and a broker's refusal is reported.

use bloodbank_bench::blast::{self, Blast};
use bloodbank_broker::{Broker, BrokerConfig};
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    blast: Blast,
}

fn blast_args(extra: &[&str]) -> Blast {
    // Paced: a debug-build broker flooded by an unpaced publisher can leave a consumer
    // without deliveries for longer than this short window.
    let mut argv = vec![
        "amqp_blast",
        "--seconds",
        "0.5",
        "--warmup",
        "0.2",
        "--rate",
        "20000",
    ];
    argv.extend_from_slice(extra);
    Args::parse_from(argv).blast
}

async fn broker() -> Broker {
    let config = BrokerConfig {
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        ..BrokerConfig::default()
    };
    Broker::start(config).await.expect("broker starts")
}

async fn run(url: String, blast: Blast) -> blast::Outcome {
    tokio::task::spawn_blocking(move || blast::run(&url, Some("self"), &blast))
        .await
        .unwrap()
        .expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_from_publisher_to_consumer_with_acks_and_without() {
    let b = broker().await;
    let url = format!("amqp://guest:guest@{}/%2f", b.addr());
    for extra in [
        &[][..],
        &["--autoack"][..],
        &["--persistent", "--confirm", "256"][..],
    ] {
        let o = run(url.clone(), blast_args(extra)).await;
        assert_eq!(o.error, None, "{extra:?}");
        assert!(o.published_per_s > 0.0, "{extra:?}: {o:?}");
        assert!(o.consumed_per_s > 0.0, "{extra:?}: {o:?}");
        assert!(o.broker_us_per_msg.is_some(), "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_run_leaves_exactly_what_it_confirmed() {
    let b = broker().await;
    let url = format!("amqp://guest:guest@{}/%2f", b.addr());
    let args = [
        "--consumers",
        "0",
        "--persistent",
        "--confirm",
        "1000",
        "--count",
        "5000",
        "--queue",
        "kept",
        "--keep",
    ];
    let o = run(url.clone(), blast_args(&args)).await;
    assert_eq!(o.error, None);
    assert!(o.rss_bytes_per_msg.is_some());
    let conn = lapin::Connection::connect(&url, Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "kept".into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_the_broker_is_reported() {
    let b = broker().await;
    let url = format!("amqp://guest:guest@{}/nowhere", b.addr());
    let err = tokio::task::spawn_blocking(move || blast::run(&url, None, &blast_args(&[])))
        .await
        .unwrap()
        .expect_err("no such vhost");
    assert!(err.to_string().contains("broker closed"), "{err}");
}
