//! Criterion benchmarks of the hot path: decode alone, subject analysis, thread-key derivation,
//! engine ingest alone (pre-decoded events), and replay end to end, all over the same generated
//! `mixed` stream. `replay_end_to_end / decode` is the ratio BENCHMARKS.md tracks: measured in
//! one run, it holds up on a noisy machine where absolute times do not. Throughput is reported
//! in events per second; BENCHMARKS.md records the figures and the machine.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use stormwatch::config::Config;
use stormwatch::decode::{decode_json, DecodeOptions, DEFAULT_MAX_RECORD_BYTES};
use stormwatch::engine::Engine;
use stormwatch::event::Event;
use stormwatch::generate::{generate, GenerateOptions, Scenario};
use stormwatch::replay::{replay, ReplayOptions};

const EVENTS: u64 = 200_000;

fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    let options = GenerateOptions {
        scenario: Scenario::Mixed,
        seed: 42,
        events: Some(EVENTS),
    };
    generate(&options, &mut out).expect("generate into memory");
    out
}

fn decode_options() -> DecodeOptions {
    DecodeOptions {
        now: stormwatch::timefmt::now_millis(),
        max_future_skew: 5 * 60_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    }
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

fn benches(c: &mut Criterion) {
    let data = stream();
    let lines = lines(&data);
    let options = decode_options();
    let events: Vec<Event<'static>> = lines
        .iter()
        .filter_map(|l| decode_json(l, &options).ok().map(Event::into_owned))
        .collect();
    let config = Config::default();

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut ok = 0u64;
            for line in &lines {
                ok += u64::from(decode_json(line, &options).is_ok());
            }
            ok
        })
    });
    group.bench_function("subject_analysis", |b| {
        let mut out = String::new();
        b.iter(|| {
            let mut replies = 0u64;
            for event in &events {
                if let Some(subject) = &event.subject {
                    replies +=
                        u64::from(stormwatch::subject::analyze_into(subject, &mut out).is_some());
                }
            }
            replies
        })
    });
    group.throughput(Throughput::Elements(events.len() as u64));
    // Thread-key derivation alone (subject analysis, References/In-Reply-To/subject joins), on
    // an engine that has seen the whole stream, so joins find what they would in a replay.
    let mut joined = Engine::from_config(&config);
    let mut alerts = Vec::new();
    for event in &events {
        joined.ingest(event, &mut alerts);
    }
    group.bench_function("thread_key", |b| {
        b.iter(|| {
            let mut keyed = 0u64;
            for event in &events {
                keyed += u64::from(joined.thread_key_of(event).is_some());
            }
            keyed
        })
    });
    group.bench_function("engine_ingest", |b| {
        b.iter_batched(
            || Engine::from_config(&config),
            |mut engine| {
                let mut alerts = Vec::new();
                for event in &events {
                    engine.ingest(event, &mut alerts);
                }
                alerts.len()
            },
            BatchSize::LargeInput,
        )
    });
    // The same, in batches of 32 as replay feeds it (`Engine::ingest_batch` prefetches each
    // batch's map entries before ingesting it).
    group.bench_function("engine_ingest_batch", |b| {
        b.iter_batched(
            || Engine::from_config(&config),
            |mut engine| {
                let mut alerts = Vec::new();
                for batch in events.chunks(32) {
                    let _ = engine.ingest_batch(batch, &mut alerts, |_, _, _| {
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                }
                alerts.len()
            },
            BatchSize::LargeInput,
        )
    });
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("replay_end_to_end", |b| {
        b.iter_batched(
            // As `stormwatch replay` does.
            || {
                let mut engine = Engine::from_config(&config);
                engine
                    .reserve_entries(Some(lines.len()))
                    .expect("the maps' room");
                engine
            },
            |mut engine| {
                let mut sink = std::io::sink();
                replay(
                    &data[..],
                    &mut engine,
                    &mut sink,
                    &ReplayOptions::default(),
                    |_| {},
                )
                .map(|s| s.records)
                .unwrap_or(0)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
