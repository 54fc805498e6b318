//! Enqueue and dequeue on a queue, plain and with priorities.

use bloodbank_broker::bench::QueueArgs;
use bloodbank_broker::bench::{Entry, Queue};
use bloodbank_broker::Message;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let message = Arc::new(Message::new(
        "",
        "q",
        Default::default(),
        Bytes::from(vec![b'x'; 1024]),
    ));
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(1000));
    for priority in [None, Some(10u8)] {
        let args = QueueArgs {
            max_priority: priority,
            ..Default::default()
        };
        let name = if priority.is_some() {
            "priority"
        } else {
            "plain"
        };
        group.bench_function(BenchmarkId::new("push+pop 1000", name), |b| {
            let mut q = Queue::new("q", true, false, None, Default::default(), args.clone(), 0);
            b.iter(|| {
                for _ in 0..1000 {
                    q.push(Entry::new(message.clone(), None), 0, None);
                }
                while let Some(e) = q.pop() {
                    std::hint::black_box(e);
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
