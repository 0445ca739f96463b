//! Tests of the generator: determinism, the line schema, ordering, the shape
//! of each scenario, and a small reference reading of the contract (thread
//! keys of section 2, duplicates and the four default rules of section 3)
//! that checks which threads would raise storms. The real engine is tested
//! against these streams elsewhere; this reference is independent of it.

use super::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn run(scenario: Scenario, seed: u64, events: u64) -> (String, GenerateSummary) {
    let mut out = Vec::new();
    let summary = generate(
        &GenerateOptions {
            scenario,
            seed,
            events: Some(events),
        },
        &mut out,
    )
    .expect("generate to a Vec");
    (String::from_utf8(out).expect("UTF-8 output"), summary)
}

/// One parsed, validated event (section 1).
#[derive(Debug, Clone)]
struct Ev {
    ts: i64,
    raw_id: String,
    id: String,
    sender: String,
    rc: u64,
    thread_id: Option<String>,
    irt: Option<String>,
    refs: Vec<String>,
    /// RFC 2047-decoded subject.
    subject: Option<String>,
    label: String,
}

fn parse_ts(s: &str) -> Option<i64> {
    let mut t = s.to_owned();
    if t.len() > 10 && t.as_bytes()[10] == b' ' {
        t.replace_range(10..11, "T");
    }
    chrono::DateTime::parse_from_rfc3339(&t)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn norm_id(s: &str) -> String {
    if let Some(start) = s.find('<') {
        if let Some(len) = s[start + 1..].find('>') {
            return s[start + 1..start + 1 + len].to_owned();
        }
    }
    s.trim().to_owned()
}

fn norm_sender(s: &str) -> String {
    norm_id(s).to_lowercase()
}

/// Validates a line as the contract's section 1 does.
fn parse(line: &str) -> Result<Ev, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not an object")?;
    let get = |k: &str| o.get(k).filter(|v| !v.is_null());
    let opt_str = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{k} has the wrong type")),
        }
    };
    let ts = match get("timestamp") {
        Some(Value::String(s)) => parse_ts(s).ok_or("bad timestamp")?,
        Some(Value::Number(n)) => n.as_i64().ok_or("bad epoch timestamp")?,
        _ => return Err("timestamp missing or wrong type".into()),
    };
    let raw_id = opt_str("message_id")?.ok_or("message_id missing")?;
    let sender = opt_str("sender")?.ok_or("sender missing")?;
    let rc = match (get("recipient_count"), get("recipients")) {
        (Some(n), _) => n.as_u64().ok_or("recipient_count not a count")?,
        (None, Some(Value::Array(a))) => {
            if a.iter().all(Value::is_string) {
                a.len() as u64
            } else {
                return Err("recipients not strings".into());
            }
        }
        _ => return Err("no recipient_count or recipients".into()),
    };
    let refs = match get("references") {
        None => Vec::new(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or("reference not a string")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("references wrong type".into()),
    };
    Ok(Ev {
        ts,
        id: norm_id(&raw_id),
        raw_id,
        sender: norm_sender(&sender),
        rc,
        thread_id: opt_str("thread_id")?,
        irt: opt_str("in_reply_to")?,
        refs,
        subject: opt_str("subject")?.map(|s| decode_2047(&s)),
        label: opt_str("label")?.unwrap_or_default(),
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    Some(out)
}

/// Decodes one encoded word at the start of `s`: (text, bytes consumed).
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = body[..q1].to_ascii_lowercase();
    let rest = &body[q1 + 1..];
    let enc = rest.chars().next()?.to_ascii_lowercase();
    let rest = rest.get(1..)?.strip_prefix('?')?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    let bytes = match enc {
        'b' => base64_decode(text)?,
        'q' => {
            let mut out = Vec::new();
            let b = text.as_bytes();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'_' => out.push(b' '),
                    b'=' => {
                        let hex = text.get(i + 1..i + 3)?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 2;
                    }
                    c => out.push(c),
                }
                i += 1;
            }
            out
        }
        _ => return None,
    };
    let decoded = match charset.as_str() {
        "utf-8" => String::from_utf8(bytes).ok()?,
        "iso-8859-1" | "latin1" => bytes.iter().map(|&b| char::from(b)).collect(),
        _ => return None,
    };
    let consumed = 2 + q1 + 1 + 2 + end + 2;
    Some((decoded, consumed))
}

/// RFC 2047 decoding, dropping whitespace between adjacent encoded words.
fn decode_2047(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut after_word = false;
    while let Some(i) = rest.find("=?") {
        match encoded_word(&rest[i..]) {
            Some((text, len)) => {
                let before = &rest[..i];
                if !(after_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&text);
                after_word = true;
                rest = &rest[i + len..];
            }
            None => {
                out.push_str(&rest[..i + 2]);
                after_word = false;
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

const REPLY_WORDS: [&str; 16] = [
    "re", "aw", "sv", "vs", "antw", "odp", "r", "rif", "réf", "ref", "ynt", "res", "vá", "回复",
    "答复", "回覆",
];
const FORWARD_WORDS: [&str; 9] = [
    "fw", "fwd", "wg", "tr", "rv", "enc", "doorst", "转发", "轉寄",
];

/// A leading reply (`true`) or forward (`false`) prefix: the rest after it.
fn prefix(s: &str) -> Option<(bool, &str)> {
    let word_end = s
        .char_indices()
        .find(|(_, c)| !c.is_alphabetic())
        .map_or(s.len(), |(i, _)| i);
    let word = s[..word_end].to_lowercase();
    let reply = if REPLY_WORDS.contains(&word.as_str()) {
        true
    } else if FORWARD_WORDS.contains(&word.as_str()) {
        false
    } else {
        return None;
    };
    let mut rest = &s[word_end..];
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(r) = rest.strip_prefix(open) {
            let digits = r.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 {
                if let Some(r2) = r[digits..].strip_prefix(close) {
                    rest = r2;
                }
            }
        }
    }
    let rest = rest.trim_start_matches(' ');
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))?;
    Some((reply, rest))
}

/// (normalized subject, is a reply by subject) per section 2.
fn normalize_subject(s: &str) -> (String, bool) {
    let mut rest = s.trim();
    let mut first: Option<bool> = None;
    loop {
        if rest.starts_with('[') {
            if let Some(end) = rest.find(']') {
                rest = rest[end + 1..].trim();
                continue;
            }
        }
        if let Some((reply, r)) = prefix(rest) {
            first.get_or_insert(reply);
            rest = r.trim();
            continue;
        }
        break;
    }
    let mut normalized = rest
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    // What counts of it is bounded: up to the last whole character within 990 bytes, so a
    // `subject:` key is no longer than an id may be.
    let mut end = normalized.len().min(990);
    while !normalized.is_char_boundary(end) {
        end -= 1;
    }
    normalized.truncate(end);
    (normalized, first == Some(true))
}

const MIN_RECIPIENTS: u64 = 2500;
const HOUR: i64 = 3_600_000;
const TEN_MIN: i64 = 600_000;

#[derive(Debug, Clone)]
struct ReplyAll {
    ts: i64,
    sender: String,
    rc: u64,
    label: String,
}

/// A reference reading of sections 2 and 3 with the default settings,
/// recording which rules ever hold on each thread.
#[derive(Default)]
struct Reference {
    t: i64,
    id_key: HashMap<String, String>,
    subject_key: HashMap<String, String>,
    counted: HashMap<String, i64>,
    threads: BTreeMap<String, Vec<ReplyAll>>,
    fired: BTreeMap<String, BTreeSet<&'static str>>,
    late: u64,
    duplicates: u64,
}

impl Reference {
    fn feed(&mut self, e: &Ev) {
        if self.t != 0 && e.ts < self.t - 60_000 {
            self.late += 1;
            return;
        }
        if !e.id.is_empty() {
            if let Some(&t0) = self.counted.get(&e.id) {
                if e.ts - t0 < HOUR {
                    self.duplicates += 1;
                    return;
                }
            }
        }
        self.t = self.t.max(e.ts);
        let (nsubj, subject_reply) = e
            .subject
            .as_deref()
            .map_or((String::new(), false), normalize_subject);
        let irt = e.irt.as_deref().map(norm_id).filter(|s| !s.is_empty());
        let root = e.refs.first().map(|r| norm_id(r)).filter(|s| !s.is_empty());
        let tid = e
            .thread_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let key = if let Some(t) = tid {
            Some(t.to_owned())
        } else if let Some(r) = root.clone() {
            Some(self.id_key.get(&r).cloned().unwrap_or(r))
        } else if let Some(i) = irt.clone() {
            Some(self.id_key.get(&i).cloned().unwrap_or(i))
        } else if subject_reply && !nsubj.is_empty() {
            Some(
                self.subject_key
                    .get(&nsubj)
                    .cloned()
                    .unwrap_or_else(|| format!("subject:{nsubj}")),
            )
        } else if !e.id.is_empty() {
            Some(e.id.clone())
        } else {
            None
        };
        let is_reply = irt.is_some() || !e.refs.is_empty() || subject_reply;
        let Some(key) = key else { return };
        if !e.id.is_empty() {
            self.id_key.insert(e.id.clone(), key.clone());
        }
        if e.rc >= MIN_RECIPIENTS && !nsubj.is_empty() {
            self.subject_key.insert(nsubj, key.clone());
        }
        if !(is_reply && e.rc >= MIN_RECIPIENTS) {
            return;
        }
        if !e.id.is_empty() {
            self.counted.insert(e.id.clone(), e.ts);
        }
        let list = self.threads.entry(key.clone()).or_default();
        list.push(ReplyAll {
            ts: e.ts,
            sender: e.sender.clone(),
            rc: e.rc,
            label: e.label.clone(),
        });
        let t = self.t;
        let window = |w: i64| {
            let inside: Vec<&ReplyAll> =
                list.iter().filter(|r| r.ts > t - w && r.ts <= t).collect();
            let senders: BTreeSet<&str> = inside.iter().map(|r| r.sender.as_str()).collect();
            let deliveries: u64 = inside.iter().map(|r| r.rc).sum();
            (inside.len(), senders.len(), deliveries)
        };
        let (n60, s60, d60) = window(HOUR);
        let (n10, s10, d10) = window(TEN_MIN);
        let mut held = Vec::new();
        if n60 >= 10 {
            held.push("exchange");
        }
        if d10 >= 1_000_000 && s10 >= 2 {
            held.push("amplification");
        }
        if n10 >= 3 && s10 >= 3 {
            held.push("early");
        }
        if d60 >= 250_000 && s60 >= 2 {
            held.push("sustained");
        }
        if !held.is_empty() {
            self.fired.entry(key).or_default().extend(held);
        }
    }

    /// The labels of the reply-alls on `key`.
    fn labels(&self, key: &str) -> BTreeSet<String> {
        self.threads
            .get(key)
            .map(|v| v.iter().map(|r| r.label.clone()).collect())
            .unwrap_or_default()
    }
}

/// Parses every line: (events, number of malformed lines).
fn parse_all(text: &str) -> (Vec<Ev>, usize) {
    let mut events = Vec::new();
    let mut bad = 0;
    for line in text.lines() {
        match parse(line) {
            Ok(e) => events.push(e),
            Err(_) => bad += 1,
        }
    }
    (events, bad)
}

fn reference(events: &[Ev]) -> Reference {
    let mut r = Reference::default();
    for e in events {
        r.feed(e);
    }
    r
}

#[test]
fn scenario_cli_names() {
    use clap::ValueEnum;
    for s in Scenario::ALL {
        assert_eq!(Scenario::from_str(s.name(), false), Ok(s));
        assert_eq!(s.to_string(), s.name());
    }
    assert!(Scenario::from_str("nhs2016", false).is_err());
}

#[test]
fn deterministic_per_seed() {
    for s in Scenario::ALL {
        let (a, sa) = run(s, 7, 5_000);
        let (b, sb) = run(s, 7, 5_000);
        let (c, _) = run(s, 8, 5_000);
        assert_eq!(sa, sb);
        assert!(a == b, "{s}: same seed, different output");
        assert!(a != c, "{s}: different seeds, same output");
    }
}

#[test]
fn lines_are_valid_labelled_events() {
    for s in Scenario::ALL {
        let (text, summary) = run(s, 1, 20_000);
        assert!(text.ends_with('\n'));
        let mut events = 0u64;
        let mut bad = 0u64;
        let mut labels = BTreeSet::new();
        for line in text.lines() {
            match parse(line) {
                Ok(e) => {
                    events += 1;
                    assert!(!e.label.is_empty(), "{s}: no label: {line}");
                    assert!(!e.id.is_empty() && !e.sender.is_empty(), "{line}");
                    labels.insert(e.label);
                }
                Err(_) => bad += 1,
            }
        }
        assert_eq!(events, summary.events, "{s}");
        assert_eq!(bad, summary.malformed_lines, "{s}");
        let expected_bad = if s == Scenario::Mixed { 7 } else { 0 };
        assert_eq!(bad, expected_bad, "{s}");
        let mut expected: BTreeSet<String> = ["benign".to_owned()].into();
        expected.extend(s.storm_labels().iter().map(|l| (*l).to_owned()));
        assert_eq!(labels, expected, "{s}");
        assert_eq!(summary.storms, s.storm_labels());
        // About the requested size: the background, repeated lines, storms.
        assert!(
            (20_000..=20_800).contains(&summary.events),
            "{s}: {}",
            summary.events
        );
    }
}

#[test]
fn malformed_lines_in_mixed_are_of_distinct_kinds() {
    let (text, _) = run(Scenario::Mixed, 3, 20_000);
    let reasons: Vec<String> = text.lines().filter_map(|l| parse(l).err()).collect();
    assert_eq!(reasons.len(), 7);
    let kinds: BTreeSet<&str> = reasons
        .iter()
        .map(|r| r.split(':').next().unwrap_or(r))
        .collect();
    assert!(kinds.len() >= 6, "{reasons:?}");
}

#[test]
fn timestamps_ordered_except_mild_disorder() {
    for s in Scenario::ALL {
        let (text, _) = run(s, 5, 20_000);
        let (events, _) = parse_all(&text);
        let mut max = i64::MIN;
        let mut behind = 0;
        for e in &events {
            if e.ts < max {
                behind += 1;
                assert!(max - e.ts <= 30_000, "{s}: {} ms behind", max - e.ts);
            }
            max = max.max(e.ts);
        }
        assert!(
            behind * 100 < events.len(),
            "{s}: {behind} lines out of order"
        );
        assert!(behind > 0, "{s}: no disorder at all");
        // Starts at 2016-11-14T08:29:00Z: with the NHSmail test message
        // when the scenario has it, else with the first background arrival.
        let first = events.iter().map(|e| e.ts).min().unwrap_or(0);
        if s == Scenario::BenignBusy {
            assert!((event::START_MS..event::START_MS + 60_000).contains(&first));
        } else {
            assert_eq!(first, event::START_MS, "{s}");
        }
    }
}

#[test]
fn timestamp_forms_are_mixed() {
    let (text, _) = run(Scenario::BenignBusy, 2, 20_000);
    let n = text.lines().count();
    let millis = text.matches("\"timestamp\":1").count();
    let offset = text.matches("+01:00\"").count();
    let utc = text.matches(".000Z\"").count() + text.matches("Z\",").count();
    assert!(millis * 100 > n && millis * 100 < n * 6, "{millis} of {n}");
    assert!(offset * 100 > n && offset * 100 < n * 6, "{offset} of {n}");
    assert!(utc * 2 > n);
    assert!(text.contains("\"recipients\":["));
}

#[test]
fn nhs_2016_storm_shape() {
    let (text, _) = run(Scenario::Nhs2016, 11, 20_000);
    let (events, bad) = parse_all(&text);
    assert_eq!(bad, 0);
    let storm: Vec<&Ev> = events.iter().filter(|e| e.label == "nhs-2016").collect();
    for e in &storm {
        assert!(e.thread_id.is_none(), "storm event with thread_id");
    }
    let original = storm
        .iter()
        .find(|e| e.irt.is_none() && e.refs.is_empty() && e.subject.as_deref() == Some("Test"))
        .expect("the original");
    assert_eq!(original.ts, event::START_MS);
    assert_eq!(original.rc, 850_000);
    assert!(original.raw_id.ends_with("@nhs.net>"));
    let reply_alls: Vec<&Ev> = storm
        .iter()
        .copied()
        .filter(|e| e.rc == 850_000 && e.id != original.id)
        .collect();
    let ids: BTreeSet<&str> = reply_alls.iter().map(|e| e.id.as_str()).collect();
    assert!((70..=90).contains(&ids.len()), "{} reply-alls", ids.len());
    let senders: BTreeSet<&str> = reply_alls.iter().map(|e| e.sender.as_str()).collect();
    assert_eq!(senders.len(), ids.len(), "distinct senders");
    // Every reply-all is a reply, by headers or by subject alone.
    let mut refs = 0;
    let mut irt_only = 0;
    let mut subject_only = 0;
    let mut encoded = 0;
    let mut seen = BTreeSet::new();
    for e in &reply_alls {
        if !seen.insert(e.id.as_str()) {
            continue;
        }
        if !e.refs.is_empty() {
            assert_eq!(e.refs[0], original.raw_id, "references root");
            refs += 1;
        } else if e.irt.is_some() {
            irt_only += 1;
        } else {
            let subject = e.subject.as_deref().unwrap_or("");
            assert_eq!(normalize_subject(subject), ("test".to_owned(), true));
            subject_only += 1;
        }
    }
    for line in text.lines().filter(|l| l.contains("\"nhs-2016\"")) {
        if line.contains("=?") {
            encoded += 1;
        }
    }
    let n = ids.len();
    assert!(refs * 100 >= n * 35 && refs * 100 <= n * 45, "{refs}/{n}");
    assert!(
        irt_only * 100 >= n * 25 && irt_only * 100 <= n * 35,
        "{irt_only}"
    );
    assert!(subject_only * 100 >= n * 25, "{subject_only}");
    assert!(encoded >= 2, "{encoded}");
    // Front-loaded over 75 minutes.
    let early = reply_alls
        .iter()
        .filter(|e| e.ts <= event::START_MS + 10 * 60_000)
        .count();
    assert!(early * 4 >= reply_alls.len(), "{early}");
    let last = reply_alls.iter().map(|e| e.ts).max().unwrap_or(0);
    assert!(last <= event::START_MS + 75 * 60_000 + 1);
    assert!(last >= event::START_MS + 45 * 60_000);
    // Hop lines with one recipient, and repeated identical lines.
    assert!(storm
        .iter()
        .any(|e| e.rc == 1 && ids.contains(e.id.as_str())));
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"nhs-2016\""))
        .collect();
    assert!(lines.windows(2).any(|w| w[0] == w[1]), "no repeated line");
    // Reply chains: some in_reply_to name an earlier reply.
    assert!(reply_alls.iter().any(|e| e
        .irt
        .as_deref()
        .is_some_and(|i| ids.contains(norm_id(i).as_str()))));
}

#[test]
fn nhs_2016_is_one_storm_by_reference_rules() {
    let (text, _) = run(Scenario::Nhs2016, 4, 20_000);
    let (events, _) = parse_all(&text);
    let r = reference(&events);
    assert_eq!(r.late, 0);
    assert_eq!(r.fired.len(), 1, "{:?}", r.fired.keys().collect::<Vec<_>>());
    let (key, rules) = r.fired.iter().next().expect("one storm");
    assert!(key.ends_with("@nhs.net"));
    assert_eq!(rules.len(), 4, "{rules:?}");
    assert_eq!(r.labels(key), ["nhs-2016".to_owned()].into());
    let on_thread = r.threads.get(key).map_or(0, Vec::len);
    assert!((70..=90).contains(&on_thread), "{on_thread} counted");
}

/// The simple check of the brief: no group of replies to 2,500+ recipients
/// sharing a normalized subject, an in_reply_to, a references root or a
/// thread_id has 3 distinct senders within 10 minutes.
fn no_early_pattern(events: &[Ev]) {
    let mut groups: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.rc >= MIN_RECIPIENTS) {
        let (subject, subject_reply) = e
            .subject
            .as_deref()
            .map_or((String::new(), false), normalize_subject);
        let is_reply = e.irt.is_some() || !e.refs.is_empty() || subject_reply;
        if !is_reply {
            continue;
        }
        let mut keys = vec![format!("s:{subject}")];
        if let Some(i) = &e.irt {
            keys.push(format!("i:{}", norm_id(i)));
        }
        if let Some(r) = e.refs.first() {
            keys.push(format!("r:{}", norm_id(r)));
        }
        if let Some(t) = &e.thread_id {
            keys.push(format!("t:{t}"));
        }
        for k in keys {
            groups.entry(k).or_default().push((e.ts, e.sender.clone()));
        }
    }
    for (k, v) in &groups {
        for (t, _) in v {
            let senders: BTreeSet<&str> = v
                .iter()
                .filter(|(u, _)| *u > t - TEN_MIN && *u <= *t)
                .map(|(_, s)| s.as_str())
                .collect();
            assert!(senders.len() < 3, "group {k}: {senders:?}");
        }
    }
}

#[test]
fn benign_busy_raises_no_storm() {
    for (seed, events) in [(1, 40_000), (2, 15_000)] {
        let (text, _) = run(Scenario::BenignBusy, seed, events);
        let (events, _) = parse_all(&text);
        no_early_pattern(&events);
        let r = reference(&events);
        assert_eq!(r.late, 0);
        assert!(r.fired.is_empty(), "seed {seed}: {:?}", r.fired);
        // It is busy with big audiences: announcements, newsletters, and a
        // few mistaken reply-alls that must not add up to a storm.
        let big = events.iter().filter(|e| e.rc >= 5_000).count();
        assert!(big >= 5, "{big} big-audience events");
        let mistaken: usize = r.threads.values().map(Vec::len).sum();
        assert!(mistaken >= 1, "seed {seed}: no mistaken reply-all");
        let small_list_replies = events
            .iter()
            .filter(|e| (5..2500).contains(&e.rc) && e.irt.is_some())
            .count();
        assert!(
            small_list_replies * 10 > events.len(),
            "{small_list_replies}"
        );
        assert!(text
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == w[1]));
    }
}

#[test]
fn mixed_has_exactly_the_two_storms() {
    let (text, summary) = run(Scenario::Mixed, 9, 30_000);
    assert_eq!(summary.malformed_lines, 7);
    let (events, bad) = parse_all(&text);
    assert_eq!(bad, 7);
    let r = reference(&events);
    assert_eq!(r.fired.len(), 2, "{:?}", r.fired);
    let by_label: BTreeMap<String, (&String, &BTreeSet<&str>)> = r
        .fired
        .iter()
        .map(|(k, rules)| {
            let labels = r.labels(k);
            assert_eq!(labels.len(), 1, "{k}: {labels:?}");
            (labels.into_iter().next().unwrap_or_default(), (k, rules))
        })
        .collect();
    let (_, nhs_rules) = by_label["nhs-2016"];
    assert_eq!(nhs_rules.len(), 4);
    let (staff_key, staff_rules) = by_label["all-staff-2016"];
    let expected: BTreeSet<&str> = ["early", "exchange"].into();
    assert_eq!(*staff_rules, expected);
    let tid = events
        .iter()
        .find(|e| e.label == "all-staff-2016")
        .and_then(|e| e.thread_id.clone());
    assert_eq!(tid.as_ref(), Some(staff_key));
    let staff: Vec<&Ev> = events
        .iter()
        .filter(|e| {
            e.label == "all-staff-2016" && e.subject.as_deref().is_some_and(|s| s.starts_with("R"))
        })
        .collect();
    let ids: BTreeSet<&str> = staff.iter().map(|e| e.id.as_str()).collect();
    let senders: BTreeSet<&str> = staff.iter().map(|e| e.sender.as_str()).collect();
    assert_eq!((ids.len(), senders.len()), (12, 8));
    let first = staff.iter().map(|e| e.ts).min().unwrap_or(0);
    let last = staff.iter().map(|e| e.ts).max().unwrap_or(0);
    assert!(last - first <= 20 * 60_000);
}

#[test]
fn subject_reference_normalization() {
    assert_eq!(normalize_subject("Fwd: Re: x"), ("x".into(), false));
    assert_eq!(
        normalize_subject("[a] RE(3) :  Big  Day"),
        ("big day".into(), true)
    );
    assert_eq!(normalize_subject("Research"), ("research".into(), false));
    assert_eq!(normalize_subject("回复：Test"), ("test".into(), true));
    assert_eq!(
        decode_2047("=?UTF-8?B?UkU6?= =?UTF-8?B?IFRlc3Q=?="),
        "RE: Test"
    );
    assert_eq!(decode_2047("=?iso-8859-1?Q?R=E9f_:_Test?="), "Réf : Test");
}

/// The reference rules over the default sizes (slow in debug builds; run
/// by hand with `--release -- --ignored`).
#[test]
#[ignore]
fn default_sizes_by_reference() {
    for s in Scenario::ALL {
        let mut out = Vec::new();
        let options = GenerateOptions {
            scenario: s,
            seed: 0,
            events: None,
        };
        generate(&options, &mut out).expect("generate");
        let text = String::from_utf8(out).expect("UTF-8");
        let (events, _) = parse_all(&text);
        let benign: Vec<Ev> = events
            .iter()
            .filter(|e| e.label == "benign")
            .cloned()
            .collect();
        no_early_pattern(&benign);
        let r = reference(&events);
        let mut labels: Vec<String> = r.fired.keys().flat_map(|k| r.labels(k)).collect();
        labels.sort();
        let mut expected: Vec<String> = s.storm_labels().iter().map(|l| (*l).to_owned()).collect();
        expected.sort();
        assert_eq!(labels, expected, "{s}");
        assert_eq!(r.late, 0);
        let mistaken: usize = r.threads.values().map(Vec::len).sum();
        println!(
            "{s}: {} events, {} reply-alls, storms {labels:?}",
            events.len(),
            mistaken
        );
    }
}

/// Throughput check, run by hand in release mode:
/// `cargo test --release --lib generate::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput_5m_events() {
    for s in Scenario::ALL {
        let mut sink = CountingSink(0);
        let start = std::time::Instant::now();
        let summary = generate(
            &GenerateOptions {
                scenario: s,
                seed: 1,
                events: Some(5_000_000),
            },
            &mut sink,
        )
        .expect("generate");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{s}: {} events, {} bytes ({:.1} B/line) in {secs:.2} s = {:.2} M events/s",
            summary.events,
            sink.0,
            sink.0 as f64 / summary.events as f64,
            summary.events as f64 / secs / 1e6
        );
    }
}

#[test]
#[ignore]
fn default_sizes() {
    for s in Scenario::ALL {
        let mut sink = CountingSink(0);
        let summary = generate(
            &GenerateOptions {
                scenario: s,
                seed: 0,
                events: None,
            },
            &mut sink,
        )
        .expect("generate");
        println!(
            "{s}: {} events + {} malformed, {} bytes, {:.1} B/line",
            summary.events,
            summary.malformed_lines,
            sink.0,
            sink.0 as f64 / (summary.events + summary.malformed_lines) as f64
        );
    }
}

struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
