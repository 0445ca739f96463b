//! The replay / decode-only ratio over one file (BENCHMARKS.md, "Replay"): alternates a
//! decode-only pass (line splitting and JSON decoding, as replay does them) with a full replay
//! (the same, plus the engine and alert output to a sink) over the same file, and prints each
//! pass and the ratio of the medians. Alternating in one process is what makes the ratio hold on
//! a shared machine where absolute times drift from minute to minute.
//!
//! `cargo run --release --example replay_ratio -- FILE [ROUNDS]` (default 3 rounds). Uses the
//! same allocator as the `stormwatch` binary (mimalloc).

use std::fs::File;
use std::io::BufReader;
use std::time::{Duration, Instant};
use stormwatch::config::Config;
use stormwatch::decode::{decode_json, DecodeOptions, DEFAULT_MAX_RECORD_BYTES};
use stormwatch::engine::Engine;
use stormwatch::replay::{replay, LineReader, Record, ReplayOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The input buffer size: as `stormwatch replay` uses.
const READ_BUFFER: usize = 1 << 18;

fn decode_only(path: &str) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let input = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let mut reader = LineReader::new(input, DEFAULT_MAX_RECORD_BYTES);
    let options = DecodeOptions {
        now: stormwatch::timefmt::now_millis(),
        max_future_skew: 5 * 60_000,
        max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
    };
    let mut records = 0u64;
    let mut ok = 0u64;
    while let Some(record) = reader.next_record()? {
        records += 1;
        if let Record::Line(line) = record {
            ok += u64::from(decode_json(line, &options).is_ok());
        }
    }
    std::hint::black_box(ok);
    Ok((records, started.elapsed()))
}

fn full_replay(path: &str) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let input = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let mut engine = Engine::from_config(&Config::default());
    let mut sink = std::io::sink();
    let summary = replay(
        input,
        &mut engine,
        &mut sink,
        &ReplayOptions::default(),
        |_| {},
    )?;
    let elapsed = started.elapsed();
    drop(engine);
    Ok((summary.records, elapsed))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    stormwatch::allocator::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: replay_ratio FILE [ROUNDS]"))?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let (mut decode_times, mut replay_times) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (records, decode) = decode_only(&path)?;
        let (_, replayed) = full_replay(&path)?;
        let rate = |d: Duration| records as f64 / d.as_secs_f64();
        println!(
            "round {round}: {records} records; decode-only {:.2} s ({:.0}/s); replay {:.2} s ({:.0}/s); ratio {:.2}",
            decode.as_secs_f64(),
            rate(decode),
            replayed.as_secs_f64(),
            rate(replayed),
            replayed.as_secs_f64() / decode.as_secs_f64()
        );
        decode_times.push(decode);
        replay_times.push(replayed);
    }
    let (decode, replayed) = (median(decode_times), median(replay_times));
    println!(
        "median: decode-only {:.2} s, replay {:.2} s, replay / decode-only {:.2}",
        decode.as_secs_f64(),
        replayed.as_secs_f64(),
        replayed.as_secs_f64() / decode.as_secs_f64()
    );
    Ok(())
}
