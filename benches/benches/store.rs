//! The message log: appending 1 KiB persistent messages, and one group commit (fdatasync) per
//! batch of 256, as publishers with confirms drive it.

use bloodbank_broker::bench::MessageLog;
use bloodbank_broker::Message;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = MessageLog::open(dir.path(), 64 << 20).unwrap();
    let message = Message::new("", "q", Default::default(), Bytes::from(vec![b'x'; 1024]));
    let holders = [("/", "q")];
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("append + ack 1 KiB (no sync)", |b| {
        b.iter(|| {
            let id = log.publish(&message, 0, &holders).unwrap();
            log.ack("/", "q", vec![id]).unwrap();
        })
    });
    let waiter = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    group.throughput(Throughput::Elements(256));
    group.bench_function("append 256 x 1 KiB + one fdatasync", |b| {
        b.iter(|| {
            let mut ids = Vec::with_capacity(256);
            for _ in 0..256 {
                ids.push(log.publish(&message, 0, &holders).unwrap());
            }
            log.flush();
            let writer = log.writer().clone();
            let target = log.lsn();
            let mut durable = writer.subscribe();
            writer.request(target);
            waiter.block_on(async {
                while writer.durable() < target {
                    let _ = durable.changed().await;
                }
            });
            log.ack("/", "q", ids).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
