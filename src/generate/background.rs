//! Streaming benign background traffic, labelled `"benign"`.
//!
//! Events are produced one at a time in timestamp order (Poisson arrivals),
//! with a small fixed amount of state (recent messages, active list threads,
//! recent announcements), so memory stays constant however many events are
//! asked for. The kinds of traffic and their weights come from [`Mix`].
//!
//! Invariants the benign scenarios rely on (checked by the tests and, by the
//! other half of the crate, through the detection engine):
//! - the only replies with `recipient_count >= 2500` are the occasional
//!   mistaken reply-alls to an announcement: at most two per announcement
//!   (from different senders, at least ten minutes apart), so on any thread
//!   at most 2 reply-alls and at most 200,000 deliveries ever;
//! - announcements and newsletters (the only big-audience events that
//!   record subjects) have unique subjects that carry no reply prefix, so no
//!   two big threads share a normalized subject.

use super::emit::Emitter;
use super::event::{
    write_timestamp, EventOut, RecipientsOut, RefsOut, TimestampOut, TsForm, MINUTE_MS,
};
use super::names::{write_message_id, write_sender, AddrForm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::io;

/// The label of every background event.
pub(crate) const BENIGN: &str = "benign";

/// Relative weights of the kinds of background traffic (any unit).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mix {
    /// A new conversation to 1-20 recipients.
    pub ordinary_new: u32,
    /// A reply within a recent ordinary conversation (1-20 recipients).
    pub ordinary_reply: u32,
    /// A message in a busy thread on a small list (5-2,000 recipients).
    pub small_list: u32,
    /// A direct reply (1 recipient) to a recent announcement.
    pub announcement_reply: u32,
    /// An announcement to a large list (5,000-100,000 recipients).
    pub announcement: u32,
    /// A newsletter (10,000-50,000 recipients, never a reply).
    pub newsletter: u32,
    /// A mistaken reply-all to a recent announcement (at most two each).
    pub mistaken_reply_all: u32,
}

/// Parameters of a background stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackgroundConfig {
    pub seed: u64,
    pub start_ms: i64,
    /// The stream spans about this long.
    pub span_ms: i64,
    /// Exactly this many arrivals (events before repetition).
    pub events: u64,
    pub mix: Mix,
    /// The organisation's own mail domain.
    pub domain: &'static str,
    /// Probability that a line is logged twice (two hops).
    pub duplicate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OrdinaryNew,
    OrdinaryReply,
    SmallList,
    AnnouncementReply,
    Announcement,
    Newsletter,
    Mistaken,
}

/// Which threading headers a reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Headers {
    /// None: a new message, or a reply known only by its subject prefix.
    None,
    InReplyTo,
    InReplyToAndRefs,
    Refs,
    RefsJoined,
}

/// How the recipients appear.
#[derive(Debug, Clone, Copy)]
enum Recip {
    Count(u64),
    List { first: u32, count: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    id: u64,
    root: u64,
    topic: u16,
    rc: u16,
}

#[derive(Debug, Clone, Copy)]
struct SmallList {
    root: u64,
    last: u64,
    rc: u32,
    members: u32,
    tag: u16,
    topic: u16,
    replies: u32,
    limit: u32,
}

#[derive(Debug, Clone, Copy)]
struct Announcement {
    id: u64,
    notice: u32,
    topic: u16,
    prefix: u8,
    rc: u32,
    start: i64,
    mistaken: u8,
    last_sender: u32,
    last_mistaken: i64,
}

/// Reusable text buffers of the event being written.
#[derive(Debug, Default)]
struct Bufs {
    ts: String,
    id: String,
    sender: String,
    parent: String,
    root: String,
    joined: String,
    subject: String,
    thread: String,
}

const RECENT_CAP: usize = 4096;
const LISTS: usize = 32;
const ANNOUNCEMENTS: usize = 16;
const PEOPLE: u32 = 30_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

const EXTERNAL: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];

const TOPICS: [&str; 40] = [
    "Lunch on Friday?",
    "Budget review",
    "Minutes from Tuesday's meeting",
    "Rota for December",
    "Printer on 3rd floor",
    "Draft policy for comment",
    "Your leave request",
    "Patient transport booking",
    "Training dates",
    "Invoice 4471",
    "Quick question",
    "Handover notes",
    "Catch-up next week",
    "Updated spreadsheet",
    "Room booking",
    "Audit follow-up",
    "Clinic letters",
    "IT ticket update",
    "Parking permit",
    "Project status",
    "Interview panel",
    "Agenda items",
    "Slides for Thursday",
    "Supplier quote",
    "Referral query",
    "Expenses",
    "Welcome to the team",
    "Locum cover",
    "Data request",
    "Fire drill",
    "Shift swap",
    "Café menu \"feedback\"",
    "Conference abstract",
    "Contract renewal",
    "Safeguarding training",
    "Board paper v3",
    "Ward supplies",
    "Out of office cover",
    "Teams link",
    "Re-audit plan",
];

const ANNOUNCE_TOPICS: [&str; 12] = [
    "Flu vaccination clinics open",
    "Changes to the staff car park",
    "Message from the Chief Executive",
    "Winter pressures update",
    "New expenses system goes live",
    "Staff survey results",
    "Planned email maintenance this weekend",
    "Christmas opening hours",
    "Pay award update",
    "Reminder: mandatory training deadline",
    "Building works in the east wing",
    "Information governance bulletin",
];

const ANNOUNCE_PREFIX: [&str; 3] = ["", "FW: ", "Fwd: Re: "];

const LIST_TAGS: [&str; 12] = [
    "[radiology]",
    "[eng-all]",
    "[finance-team]",
    "[ward-7]",
    "[research]",
    "[pharmacy]",
    "[estates]",
    "[it-ops]",
    "[hr-partners]",
    "[theatres]",
    "[comms]",
    "[juniors]",
];

const NEWSLETTERS: [(&str, &str); 5] = [
    ("Staff Bulletin", "bulletin"),
    ("Research Digest", "research-digest"),
    ("Wellbeing Weekly", "wellbeing"),
    ("IT Service News", "it-news"),
    ("Learning & Development", "learning"),
];

const REPLY_PREFIX: [&str; 6] = ["Re: ", "RE: ", "Re: ", "AW: ", "Sv: ", "Re: Re: "];

/// A streaming generator of benign traffic.
pub(crate) struct Background {
    cfg: BackgroundConfig,
    rng: ChaCha8Rng,
    salt: u64,
    remaining: u64,
    clock: f64,
    next_ts: i64,
    mean_gap: f64,
    kinds: Vec<(u64, Kind)>,
    total_weight: u64,
    next_msg: u64,
    recent: Vec<Recent>,
    recent_pos: usize,
    lists: [Option<SmallList>; LISTS],
    announcements: [Option<Announcement>; ANNOUNCEMENTS],
    announcement_pos: usize,
    next_notice: u32,
    next_issue: u32,
    b: Bufs,
}

impl Background {
    pub(crate) fn new(cfg: BackgroundConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let salt = rng.gen::<u64>();
        let m = cfg.mix;
        let mut kinds = Vec::new();
        let mut total = 0u64;
        for (w, k) in [
            (m.ordinary_new, Kind::OrdinaryNew),
            (m.ordinary_reply, Kind::OrdinaryReply),
            (m.small_list, Kind::SmallList),
            (m.announcement_reply, Kind::AnnouncementReply),
            (m.announcement, Kind::Announcement),
            (m.newsletter, Kind::Newsletter),
            (m.mistaken_reply_all, Kind::Mistaken),
        ] {
            if w > 0 {
                total += u64::from(w);
                kinds.push((total, k));
            }
        }
        if kinds.is_empty() {
            kinds.push((1, Kind::OrdinaryNew));
            total = 1;
        }
        let mean_gap = cfg.span_ms as f64 / cfg.events.max(1) as f64;
        let mut bg = Background {
            cfg,
            rng,
            salt,
            remaining: cfg.events,
            clock: 0.0,
            next_ts: cfg.start_ms,
            mean_gap,
            kinds,
            total_weight: total,
            next_msg: 1,
            recent: Vec::with_capacity(RECENT_CAP),
            recent_pos: 0,
            lists: [None; LISTS],
            announcements: [None; ANNOUNCEMENTS],
            announcement_pos: 0,
            next_notice: 1,
            next_issue: 1,
            b: Bufs::default(),
        };
        bg.advance_clock();
        bg
    }

    /// The timestamp of the next event, or `None` when the stream is done.
    pub(crate) fn peek(&self) -> Option<i64> {
        (self.remaining > 0).then_some(self.next_ts)
    }

    fn advance_clock(&mut self) {
        let u: f64 = self.rng.gen();
        self.clock += -(1.0 - u).ln() * self.mean_gap;
        self.next_ts = self.cfg.start_ms + self.clock as i64;
    }

    /// Generates and writes the next event (see [`Background::peek`]).
    pub(crate) fn emit_next(&mut self, em: &mut Emitter<'_>) -> io::Result<()> {
        if self.remaining == 0 {
            return Ok(());
        }
        let ts = self.next_ts;
        let pick = self.rng.gen_range(0..self.total_weight);
        let kind = self
            .kinds
            .iter()
            .find(|(limit, _)| pick < *limit)
            .map_or(Kind::OrdinaryNew, |(_, k)| *k);
        let done = match kind {
            Kind::OrdinaryNew => false,
            Kind::OrdinaryReply => self.ordinary_reply(em, ts)?,
            Kind::SmallList => {
                self.small_list(em, ts)?;
                true
            }
            Kind::AnnouncementReply => self.announcement_reply(em, ts)?,
            Kind::Announcement => {
                self.announcement(em, ts)?;
                true
            }
            Kind::Newsletter => {
                self.newsletter(em, ts)?;
                true
            }
            Kind::Mistaken => self.mistaken(em, ts)?,
        };
        if !done {
            self.ordinary_new(em, ts)?;
        }
        self.remaining -= 1;
        self.advance_clock();
        Ok(())
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_msg;
        self.next_msg += 1;
        id
    }

    fn write_id(&mut self, id: u64) {
        write_message_id(&mut self.b.id, id, self.salt, self.cfg.domain);
    }

    /// Writes a person's address, usually at the own domain.
    fn write_person(&mut self, person: u32) {
        let form = AddrForm::pick(&mut self.rng);
        let domain = if self.rng.gen_range(0..100) < 85 {
            self.cfg.domain
        } else {
            EXTERNAL[self.rng.gen_range(0..EXTERNAL.len())]
        };
        write_sender(&mut self.b.sender, person, domain, form);
    }

    fn set_parent(&mut self, root: u64, parent: u64) {
        write_message_id(&mut self.b.root, root, self.salt, self.cfg.domain);
        write_message_id(&mut self.b.parent, parent, self.salt, self.cfg.domain);
    }

    /// Some ordinary conversations carry a client thread id (Gmail-like),
    /// consistently for every message of the conversation.
    fn thread_for(&mut self, root: u64) -> bool {
        let h = super::event::mix64(self.salt ^ root.wrapping_mul(31));
        if h.is_multiple_of(8) {
            self.b.thread.clear();
            super::names::push_hex(&mut self.b.thread, h >> 1, 16);
            true
        } else {
            false
        }
    }

    fn copies(&mut self) -> u8 {
        if self.rng.gen_bool(self.cfg.duplicate) {
            2
        } else {
            1
        }
    }

    fn pick_headers(&mut self, irt_refs: u32, irt: u32, refs: u32, joined: u32) -> Headers {
        let x = self.rng.gen_range(0..100u32);
        if x < irt_refs {
            Headers::InReplyToAndRefs
        } else if x < irt_refs + irt {
            Headers::InReplyTo
        } else if x < irt_refs + irt + refs {
            Headers::Refs
        } else if x < irt_refs + irt + refs + joined {
            Headers::RefsJoined
        } else {
            Headers::None
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        em: &mut Emitter<'_>,
        ts: i64,
        recip: Recip,
        headers: Headers,
        same_root: bool,
        subject: bool,
        thread: bool,
    ) -> io::Result<()> {
        let form = TsForm::pick(&mut self.rng);
        let copies = self.copies();
        let b = &mut self.b;
        let timestamp = match write_timestamp(&mut b.ts, ts, form) {
            Some(_) => TimestampOut::Text(b.ts.as_str()),
            None => TimestampOut::Millis(ts),
        };
        if headers == Headers::RefsJoined {
            b.joined.clear();
            b.joined.push_str(&b.root);
            if !same_root {
                b.joined.push(' ');
                b.joined.push_str(&b.parent);
            }
        }
        let list = [b.root.as_str(), b.parent.as_str()];
        let refs = if same_root { &list[..1] } else { &list[..] };
        let (recipient_count, recipients) = match recip {
            Recip::Count(n) => (Some(n), None),
            Recip::List { first, count } => (
                None,
                Some(RecipientsOut {
                    first,
                    count,
                    domain: self.cfg.domain,
                }),
            ),
        };
        let event = EventOut {
            timestamp,
            message_id: &b.id,
            sender: &b.sender,
            recipient_count,
            recipients,
            thread_id: thread.then_some(b.thread.as_str()),
            in_reply_to: matches!(headers, Headers::InReplyTo | Headers::InReplyToAndRefs)
                .then_some(b.parent.as_str()),
            references: match headers {
                Headers::InReplyToAndRefs | Headers::Refs => Some(RefsOut::List(refs)),
                Headers::RefsJoined => Some(RefsOut::Joined(b.joined.as_str())),
                Headers::None | Headers::InReplyTo => None,
            },
            subject: subject.then_some(b.subject.as_str()),
            label: BENIGN,
        };
        em.event(ts, &event, copies, true)
    }

    fn remember(&mut self, r: Recent) {
        if self.recent.len() < RECENT_CAP {
            self.recent.push(r);
        } else {
            self.recent[self.recent_pos] = r;
            self.recent_pos = (self.recent_pos + 1) % RECENT_CAP;
        }
    }

    fn ordinary_new(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<()> {
        let id = self.new_id();
        self.write_id(id);
        let person = self.rng.gen_range(0..PEOPLE);
        self.write_person(person);
        let topic = self.rng.gen_range(0..TOPICS.len());
        self.b.subject.clear();
        let style = self.rng.gen_range(0..100u32);
        match style {
            0..=3 => self.b.subject.push_str("FW: "),
            4 => self.b.subject.push_str("Fwd: Re: "),
            _ => {}
        }
        self.b.subject.push_str(TOPICS[topic]);
        let has_subject = style < 97;
        let u: f64 = self.rng.gen();
        let rc = 1 + (u * u * 19.0) as u32;
        let recip = if rc <= 8 && self.rng.gen_range(0..100) < 6 {
            Recip::List {
                first: self.rng.gen_range(0..PEOPLE),
                count: rc,
            }
        } else {
            Recip::Count(u64::from(rc))
        };
        let thread = self.thread_for(id);
        self.remember(Recent {
            id,
            root: id,
            topic: topic as u16,
            rc: rc as u16,
        });
        self.write(em, ts, recip, Headers::None, true, has_subject, thread)
    }

    fn ordinary_reply(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<bool> {
        if self.recent.is_empty() {
            return Ok(false);
        }
        let parent = self.recent[self.rng.gen_range(0..self.recent.len())];
        let id = self.new_id();
        self.write_id(id);
        let person = self.rng.gen_range(0..PEOPLE);
        self.write_person(person);
        self.set_parent(parent.root, parent.id);
        let rc = if self.rng.gen_range(0..100) < 65 {
            1
        } else {
            parent.rc.max(1)
        };
        let headers = self.pick_headers(55, 25, 7, 3);
        self.b.subject.clear();
        self.b
            .subject
            .push_str(REPLY_PREFIX[self.rng.gen_range(0..REPLY_PREFIX.len())]);
        self.b.subject.push_str(TOPICS[usize::from(parent.topic)]);
        let has_subject = headers == Headers::None || self.rng.gen_range(0..100) < 97;
        let thread = self.thread_for(parent.root);
        self.remember(Recent {
            id,
            root: parent.root,
            topic: parent.topic,
            rc: parent.rc,
        });
        let recip = Recip::Count(u64::from(rc));
        let same_root = parent.root == parent.id;
        self.write(em, ts, recip, headers, same_root, has_subject, thread)?;
        Ok(true)
    }

    fn small_list(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<()> {
        let slot = self.rng.gen_range(0..LISTS);
        let current = self.lists[slot].filter(|l| l.replies < l.limit);
        let Some(mut list) = current else {
            // Start a new thread on this list.
            let id = self.new_id();
            let lo = 5f64.ln();
            let hi = 2000f64.ln();
            let rc = self.rng.gen_range(lo..=hi).exp().round() as u32;
            let list = SmallList {
                root: id,
                last: id,
                rc: rc.clamp(5, 2000),
                members: self.rng.gen_range(0..PEOPLE),
                tag: self.rng.gen_range(0..LIST_TAGS.len()) as u16,
                topic: self.rng.gen_range(0..TOPICS.len()) as u16,
                replies: 0,
                limit: self.rng.gen_range(5..=60),
            };
            self.lists[slot] = Some(list);
            self.write_id(id);
            self.write_person(list.members);
            self.b.subject.clear();
            self.b.subject.push_str(LIST_TAGS[usize::from(list.tag)]);
            self.b.subject.push(' ');
            self.b.subject.push_str(TOPICS[usize::from(list.topic)]);
            let recip = Recip::Count(u64::from(list.rc));
            return self.write(em, ts, recip, Headers::None, true, true, false);
        };
        let id = self.new_id();
        self.write_id(id);
        let member = list.members + self.rng.gen_range(0..list.rc.min(40));
        self.write_person(member);
        self.set_parent(list.root, list.last);
        let headers = self.pick_headers(45, 20, 10, 5);
        self.b.subject.clear();
        let tag = LIST_TAGS[usize::from(list.tag)];
        let topic = TOPICS[usize::from(list.topic)];
        let _ = match self.rng.gen_range(0..3) {
            0 => write!(self.b.subject, "Re: {tag} {topic}"),
            1 => write!(self.b.subject, "{tag} Re: {topic}"),
            _ => write!(self.b.subject, "RE: {tag} {topic}"),
        };
        let same_root = list.root == list.last;
        list.last = id;
        list.replies += 1;
        self.lists[slot] = Some(list);
        let recip = Recip::Count(u64::from(list.rc));
        self.write(em, ts, recip, headers, same_root, true, false)
    }

    fn write_announcement_subject(&mut self, a: &Announcement, reply: Option<&str>) {
        self.b.subject.clear();
        if let Some(prefix) = reply {
            self.b.subject.push_str(prefix);
        }
        let _ = write!(
            self.b.subject,
            "{}{} (notice {})",
            ANNOUNCE_PREFIX[usize::from(a.prefix)],
            ANNOUNCE_TOPICS[usize::from(a.topic)],
            a.notice
        );
    }

    fn announcement(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<()> {
        let id = self.new_id();
        self.write_id(id);
        let lo = 5000f64.ln();
        let hi = 100_000f64.ln();
        let rc = (self.rng.gen_range(lo..=hi).exp().round() as u32).clamp(5000, 100_000);
        let prefix = match self.rng.gen_range(0..100) {
            0..=9 => 1,
            10..=12 => 2,
            _ => 0,
        };
        let a = Announcement {
            id,
            notice: self.next_notice,
            topic: self.rng.gen_range(0..ANNOUNCE_TOPICS.len()) as u16,
            prefix,
            rc,
            start: ts,
            mistaken: 0,
            last_sender: u32::MAX,
            last_mistaken: i64::MIN,
        };
        self.next_notice += 1;
        self.announcements[self.announcement_pos] = Some(a);
        self.announcement_pos = (self.announcement_pos + 1) % ANNOUNCEMENTS;
        let person = PEOPLE + 100 + self.rng.gen_range(0..8);
        write_sender(&mut self.b.sender, person, self.cfg.domain, AddrForm::Named);
        self.write_announcement_subject(&a, None);
        let recip = Recip::Count(u64::from(rc));
        self.write(em, ts, recip, Headers::None, true, true, false)
    }

    /// A random announcement sent within the last hour, if one is found.
    fn active_announcement(&mut self, ts: i64) -> Option<usize> {
        for _ in 0..4 {
            let i = self.rng.gen_range(0..ANNOUNCEMENTS);
            if let Some(a) = self.announcements[i] {
                if a.start >= ts - HOUR_MS {
                    return Some(i);
                }
            }
        }
        None
    }

    fn announcement_reply(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<bool> {
        let Some(i) = self.active_announcement(ts) else {
            return Ok(false);
        };
        let Some(a) = self.announcements[i] else {
            return Ok(false);
        };
        let id = self.new_id();
        self.write_id(id);
        let person = self.rng.gen_range(0..PEOPLE);
        self.write_person(person);
        self.set_parent(a.id, a.id);
        let headers = self.pick_headers(25, 55, 5, 0);
        let prefix = if self.rng.gen_bool(0.5) {
            "Re: "
        } else {
            "RE: "
        };
        self.write_announcement_subject(&a, Some(prefix));
        self.write(em, ts, Recip::Count(1), headers, true, true, false)?;
        Ok(true)
    }

    fn mistaken(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<bool> {
        let start = self.rng.gen_range(0..ANNOUNCEMENTS);
        let found = (0..ANNOUNCEMENTS)
            .map(|k| (start + k) % ANNOUNCEMENTS)
            .find(|&i| {
                self.announcements[i].is_some_and(|a| {
                    a.start >= ts - HOUR_MS
                        && a.mistaken < 2
                        && ts >= a.last_mistaken.saturating_add(10 * MINUTE_MS)
                })
            });
        let Some(i) = found else {
            return Ok(false);
        };
        let Some(mut a) = self.announcements[i] else {
            return Ok(false);
        };
        let mut person = self.rng.gen_range(0..PEOPLE);
        if person == a.last_sender {
            person = (person + 1) % PEOPLE;
        }
        a.mistaken += 1;
        a.last_sender = person;
        a.last_mistaken = ts;
        self.announcements[i] = Some(a);
        let id = self.new_id();
        self.write_id(id);
        self.write_person(person);
        self.set_parent(a.id, a.id);
        let headers = self.pick_headers(30, 40, 0, 0);
        self.write_announcement_subject(&a, Some("RE: "));
        let recip = Recip::Count(u64::from(a.rc));
        self.write(em, ts, recip, headers, true, true, false)?;
        Ok(true)
    }

    fn newsletter(&mut self, em: &mut Emitter<'_>, ts: i64) -> io::Result<()> {
        let id = self.new_id();
        self.write_id(id);
        let (name, local) = NEWSLETTERS[self.rng.gen_range(0..NEWSLETTERS.len())];
        self.b.sender.clear();
        let _ = write!(self.b.sender, "{name} <{local}@{}>", self.cfg.domain);
        self.b.subject.clear();
        let _ = write!(self.b.subject, "{name} no. {}", self.next_issue);
        self.next_issue += 1;
        let rc = self.rng.gen_range(10_000..=50_000u64);
        self.write(em, ts, Recip::Count(rc), Headers::None, true, true, false)
    }
}
