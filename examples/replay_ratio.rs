//! The replay / decode-only ratio over one file (BENCHMARKS.md, "Replay"): alternates a
//! decode-only pass (line splitting and JSON decoding, as replay does them) with a full replay
//! (the same, plus the engine and alert output to a sink) over the same file, and prints each
//! pass and the ratio of the medians. Alternating in one process is what makes the ratio hold on
//! a shared machine where absolute times drift from minute to minute.
//!
//! A replay also reports its engine's share (`ReplayOptions::time_engine`: the time in
//! `Engine::ingest_batch`, apart from reading and decoding), per line: what detection costs
//! on its own, a figure that the code layout of the decoder does not move.
//!
//! It also gives the ratio over the file's second half alone (by bytes). Early in a file the
//! engine's maps are still growing towards their caps (rehashing, first touches of fresh
//! memory); a service runs at its caps. On a file long enough for the maps to be full by its
//! middle (10M `mixed` events), the second half's ratio is the steady state's.
//!
//! `cargo run --release --example replay_ratio -- FILE [ROUNDS]` (default 3 rounds). Uses the
//! same allocator as the `stormwatch` binary (mimalloc), with its memory in 4 KiB pages as
//! replay has it.

use std::fs::File;
use std::io::BufReader;
use std::time::{Duration, Instant};
use stormwatch::config::Config;
use stormwatch::decode::{decode_json, DecodeOptions, DEFAULT_MAX_RECORD_BYTES};
use stormwatch::engine::Engine;
use stormwatch::replay::{events_at_most, replay, LineReader, Record, ReplayOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The input buffer size: as `stormwatch replay` uses.
const READ_BUFFER: usize = 1 << 18;

/// A pass's records, its time, its time from the file's middle byte on, and (a replay's) the
/// engine's share of it.
struct Pass {
    records: u64,
    total: Duration,
    second_half: Duration,
    engine: Duration,
}

/// Notes when a pass has read half of the file.
struct Midpoint {
    middle_byte: u64,
    started: Instant,
    reached: Option<Instant>,
}

impl Midpoint {
    fn new(path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            middle_byte: std::fs::metadata(path)?.len() / 2,
            started: Instant::now(),
            reached: None,
        })
    }

    fn bytes_read(&mut self, bytes: u64) {
        if self.reached.is_none() && bytes >= self.middle_byte {
            self.reached = Some(Instant::now());
        }
    }

    fn finish(self, records: u64) -> Pass {
        let ended = Instant::now();
        Pass {
            records,
            total: ended - self.started,
            second_half: ended - self.reached.unwrap_or(ended),
            engine: Duration::ZERO,
        }
    }
}

fn decode_only(path: &str) -> anyhow::Result<Pass> {
    let mut midpoint = Midpoint::new(path)?;
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
        // As often as replay reports its progress.
        if records.is_multiple_of(4096) {
            midpoint.bytes_read(reader.bytes_read());
        }
    }
    std::hint::black_box(ok);
    Ok(midpoint.finish(records))
}

fn full_replay(path: &str) -> anyhow::Result<Pass> {
    let mut midpoint = Midpoint::new(path)?;
    let input = BufReader::with_capacity(READ_BUFFER, File::open(path)?);
    let mut engine = Engine::from_config(&Config::default());
    // As the binary does.
    engine.reserve_entries(Some(events_at_most(std::fs::metadata(path)?.len())))?;
    let mut sink = std::io::sink();
    let summary = replay(
        input,
        &mut engine,
        &mut sink,
        &ReplayOptions {
            time_engine: true,
            ..ReplayOptions::default()
        },
        |bytes| midpoint.bytes_read(bytes),
    )?;
    let pass = Pass {
        engine: summary.engine_time.unwrap_or_default(),
        ..midpoint.finish(summary.records)
    };
    drop(engine);
    Ok(pass)
}

fn ratio(numerator: Duration, denominator: Duration) -> f64 {
    numerator.as_secs_f64() / denominator.as_secs_f64()
}

fn per_event_nanos(time: Duration, events: u64) -> f64 {
    time.as_secs_f64() * 1e9 / events.max(1) as f64
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    stormwatch::allocator::keep_freed_memory();
    // As `stormwatch replay` does (see the function).
    if let Err(error) = stormwatch::allocator::avoid_transparent_huge_pages() {
        eprintln!("transparent huge pages stay on: {error}");
    }
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: replay_ratio FILE [ROUNDS]"))?;
    let rounds: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(3);
    let (mut decode_passes, mut replay_passes) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let decode = decode_only(&path)?;
        let replayed = full_replay(&path)?;
        let records = decode.records;
        let rate = |d: Duration| records as f64 / d.as_secs_f64();
        println!(
            "round {round}: {records} records; decode-only {:.2} s ({:.0}/s); replay {:.2} s ({:.0}/s); ratio {:.2}; second half {:.2} s / {:.2} s, ratio {:.2}; engine {:.2} s ({:.0} ns a line)",
            decode.total.as_secs_f64(),
            rate(decode.total),
            replayed.total.as_secs_f64(),
            rate(replayed.total),
            ratio(replayed.total, decode.total),
            decode.second_half.as_secs_f64(),
            replayed.second_half.as_secs_f64(),
            ratio(replayed.second_half, decode.second_half),
            replayed.engine.as_secs_f64(),
            per_event_nanos(replayed.engine, records),
        );
        decode_passes.push(decode);
        replay_passes.push(replayed);
    }
    let medians =
        |passes: &[Pass], part: fn(&Pass) -> Duration| median(passes.iter().map(part).collect());
    let (decode, replayed) = (
        medians(&decode_passes, |p| p.total),
        medians(&replay_passes, |p| p.total),
    );
    let (decode_half, replayed_half) = (
        medians(&decode_passes, |p| p.second_half),
        medians(&replay_passes, |p| p.second_half),
    );
    let engine = medians(&replay_passes, |p| p.engine);
    let records = replay_passes.first().map_or(0, |p| p.records);
    println!(
        "median: decode-only {:.2} s, replay {:.2} s, replay / decode-only {:.2}; second half: decode-only {:.2} s, replay {:.2} s, replay / decode-only {:.2}; engine {:.2} s ({:.0} ns a line)",
        decode.as_secs_f64(),
        replayed.as_secs_f64(),
        ratio(replayed, decode),
        decode_half.as_secs_f64(),
        replayed_half.as_secs_f64(),
        ratio(replayed_half, decode_half),
        engine.as_secs_f64(),
        per_event_nanos(engine, records),
    );
    Ok(())
}
