//! Topic matching with 10 to 100,000 bindings: the cost should stay flat in the number of
//! bindings that do not match.

use bloodbank_broker::topic::TopicTrie;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic match");
    for n in [10usize, 1_000, 10_000, 100_000] {
        let mut trie = TopicTrie::default();
        for i in 0..n {
            trie.insert(&format!("service{i}.*.created"), i);
        }
        trie.insert("theboard.#", usize::MAX);
        trie.insert("*.meeting.created", usize::MAX - 1);
        group.bench_with_input(BenchmarkId::new("2 matching among", n), &trie, |b, trie| {
            b.iter(|| std::hint::black_box(trie.matches("theboard.meeting.created")))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
