//! Scenario `mixed`: the `benign-busy` background with two storms in it,
//! the `nhs-2016` storm (joined by headers and subjects) and the smaller
//! `all-staff-2016` storm (joined by `thread_id`), plus seven malformed
//! lines of different kinds.

use super::background::BackgroundConfig;
use super::event::{sub_seed, Line};
use super::{all_staff, benign_busy, malformed, nhs2016};

/// The background: `benign-busy` traffic over at least three hours, so
/// stream time passes the end of both storms plus their quiet periods.
pub(crate) fn background(seed: u64, events: u64) -> BackgroundConfig {
    BackgroundConfig {
        seed: sub_seed(seed, 30),
        ..benign_busy::background(seed, events)
    }
}

/// The pre-built lines: both storms and the malformed lines.
pub(crate) fn lines(seed: u64, bg: &BackgroundConfig) -> Vec<Line> {
    let mut lines = nhs2016::storm(seed);
    lines.extend(all_staff::storm(seed));
    lines.extend(malformed::lines(bg.start_ms, bg.span_ms));
    lines
}
