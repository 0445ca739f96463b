//! The Postfix message text after the syslog header: which of the few lines stormwatch reads
//! this is, and its fields.
//!
//! - cleanup `QUEUEID: message-id=<id>`;
//! - cleanup `QUEUEID: info: header Subject: text from origin; from=<s> to=<r> proto=P
//!   helo=<h>` (what a `header_checks` INFO rule logs; `cleanup_act_log` in Postfix's
//!   cleanup_message.c: the header is cut to 200 bytes and, as in every Postfix log line,
//!   control characters such as a folded header's newline and tab are written as `?`);
//! - cleanup `QUEUEID: reject: ...`, `discard: ...`, `milter-reject: ...` (the message ends);
//! - qmgr `QUEUEID: from=<s>, size=N, nrcpt=N (queue active)` and `QUEUEID: removed`.

use super::super::outcome::Ignored;
use super::super::Malformed;

/// A header stormwatch reads from header_checks lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderName {
    /// `Subject:`
    Subject,
    /// `In-Reply-To:`
    InReplyTo,
    /// `References:`
    References,
    /// `Message-ID:`
    MessageId,
}

/// What a cleanup or qmgr line says, borrowing from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind<'a> {
    /// cleanup `message-id=`: the message's id (the value as logged).
    MessageId(&'a str),
    /// A header_checks line: the header and its (possibly cut) value as logged.
    Header(HeaderName, &'a str),
    /// qmgr `from=<sender>, size=..., nrcpt=N`: the message entered the active queue.
    Queued {
        /// The envelope sender (empty for bounces).
        sender: &'a str,
        /// Recipients after cleanup's virtual alias expansion.
        nrcpt: u64,
    },
    /// qmgr `removed`: the queue file is gone; the queue id may be reused.
    Removed,
    /// cleanup rejected or discarded the message.
    Rejected,
}

/// Which Postfix daemon logged a program name like `postfix/qmgr` or `postfix-out/qmgr`
/// (multi-instance `syslog_name`), or why the line is not one stormwatch reads.
pub fn daemon_of(program: &str) -> Result<&str, Ignored> {
    let (first, _) = program.split_once('/').ok_or(Ignored::NotPostfix)?;
    if !first.starts_with("postfix") {
        return Err(Ignored::NotPostfix);
    }
    Ok(program.rsplit('/').next().unwrap_or(program))
}

/// `4F1A22C0E1` (short: upper-case hex) or `4dZt2x0TTwzJr9y` (long, `enable_long_queue_ids`:
/// letters and digits), so that `warning:` and the like are not taken for one.
fn is_queue_id(text: &str) -> bool {
    let short = (6..=20).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    let long = (12..=24).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric())
        && text.bytes().any(|b| b.is_ascii_digit());
    short || long
}

/// Splits `QUEUEID: rest`.
pub fn split_queue_id(message: &str) -> Option<(&str, &str)> {
    let (id, rest) = message.split_once(": ")?;
    (is_queue_id(id) && id != "NOQUEUE").then_some((id, rest))
}

/// Reads a cleanup line's text after the queue id.
pub fn cleanup_line(rest: &str) -> Result<LineKind<'_>, LineError> {
    if let Some(id) = rest.strip_prefix("message-id=") {
        return Ok(LineKind::MessageId(id.trim()));
    }
    let (action, detail) = rest.split_once(": ").ok_or(LineError::Ignored)?;
    match action {
        "reject" | "discard" | "milter-reject" | "milter-discard" => Ok(LineKind::Rejected),
        "info" | "warning" | "hold" | "filter" | "redirect" | "bcc" | "prepend" => {
            let Some(header) = detail.strip_prefix("header ") else {
                return Err(LineError::Ignored);
            };
            let content = header_content(header).ok_or(LineError::Bad)?;
            let (name, value) = content.split_once(':').ok_or(LineError::Bad)?;
            let name = match name.trim() {
                n if n.eq_ignore_ascii_case("subject") => HeaderName::Subject,
                n if n.eq_ignore_ascii_case("in-reply-to") => HeaderName::InReplyTo,
                n if n.eq_ignore_ascii_case("references") => HeaderName::References,
                n if n.eq_ignore_ascii_case("message-id") => HeaderName::MessageId,
                _ => return Err(LineError::Ignored),
            };
            Ok(LineKind::Header(name, value.trim()))
        }
        _ => Err(LineError::Ignored),
    }
}

/// Reads a qmgr line's text after the queue id.
pub fn qmgr_line(rest: &str) -> Result<LineKind<'_>, LineError> {
    if rest == "removed" {
        return Ok(LineKind::Removed);
    }
    let Some(after) = rest.strip_prefix("from=<") else {
        return Err(LineError::Ignored);
    };
    // `from=<>, status=expired, returned to sender` and the like carry no count.
    let Some(at) = after.find(">, size=") else {
        return Err(LineError::Ignored);
    };
    let sender = after.get(..at).ok_or(LineError::Bad)?;
    let tail = after.get(at + 2..).ok_or(LineError::Bad)?;
    let Some(nrcpt_at) = tail.find("nrcpt=") else {
        return Err(LineError::Ignored);
    };
    let digits = tail.get(nrcpt_at + "nrcpt=".len()..).unwrap_or_default();
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let nrcpt = digits
        .get(..end)
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or(LineError::Bad)?;
    Ok(LineKind::Queued { sender, nrcpt })
}

/// Why a cleanup or qmgr line yields nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// A line of no interest.
    Ignored,
    /// A line of a kind stormwatch reads whose fields do not parse.
    Bad,
}

impl LineError {
    /// The outcome for the caller.
    pub fn into_result<T>(self) -> Result<Result<T, Ignored>, Malformed> {
        match self {
            LineError::Ignored => Ok(Err(Ignored::OtherLine)),
            LineError::Bad => Err(Malformed::BadPostfixLine),
        }
    }
}

/// The header (`Subject: text`) of a header_checks line: what precedes ` from ORIGIN;` where
/// ORIGIN is one token and what follows the `;` is the end or the envelope context Postfix
/// appends (` from=<`, ` to=<`, ` proto=`, ` helo=<`, or `: ` and the rule's text). The leftmost
/// such ` from ` is taken, so a rule's optional text cannot be mistaken for the header.
fn header_content(text: &str) -> Option<&str> {
    for (at, _) in text.match_indices(" from ") {
        let Some(after) = text.get(at + " from ".len()..) else {
            continue;
        };
        let Some(semicolon) = after.find(';') else {
            continue;
        };
        let origin = after.get(..semicolon).unwrap_or_default();
        if origin.is_empty() || origin.contains(' ') {
            continue;
        }
        let tail = after.get(semicolon + 1..).unwrap_or_default();
        let context = tail.is_empty()
            || [" from=<", " to=<", " proto=", " helo=<", ": "]
                .iter()
                .any(|p| tail.starts_with(p));
        if context {
            return text.get(..at);
        }
    }
    None
}

/// Undoes what Postfix's logging did to a folded header between RFC 2047 encoded words: the
/// fold's newline (and a tab) became `?`, which would glue `?=??=?` into one broken word.
/// Elsewhere a `?` is left as it is: it may be the subject's own.
pub fn unfold_encoded_words(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains("?=?") {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("?=") {
        let (head, tail) = rest.split_at(at + 2);
        out.push_str(head);
        // The fold: one or two `?` (newline, tab) or `?` and a space, then the next word.
        let after_fold = ["??=?", "? =?", "?=?"]
            .iter()
            .find(|fold| tail.starts_with(**fold))
            .map(|fold| fold.len() - 2);
        match after_fold {
            Some(skip) => {
                out.push(' ');
                rest = tail.get(skip..).unwrap_or_default();
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Undoes the other folds Postfix's logging leaves in a header value: a folded header's line
/// break is logged as `?`, so a fold before a space reads `? ` and one before a tab `??`. Mail
/// clients fold long subjects (Python's smtplib at 78 characters, Outlook and Thunderbird
/// alike), and a reply folded where the original was not must still match it by subject.
/// Unfolding keeps the whitespace, as RFC 5322 unfolding does. The cost: a subject's own `?`
/// right before a space (`Lunch? Tomorrow`) is read as a fold too and dropped; that happens to
/// the original and its replies alike, so matching is unaffected, only the shown subject loses
/// the `?`.
pub fn unfold_logged_folds(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains("? ") && !value.contains("??") {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            // Newline then space: the space stays.
            Some(' ') => {}
            // Newline then tab (both logged as `?`), then the folded text.
            Some('?') => {
                let mut ahead = chars.clone();
                ahead.next();
                match ahead.peek() {
                    Some(next) if *next != '?' && *next != ' ' => {
                        chars.next();
                        out.push(' ');
                    }
                    _ => out.push(c),
                }
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons() {
        assert_eq!(daemon_of("postfix/qmgr"), Ok("qmgr"));
        assert_eq!(daemon_of("postfix-out/cleanup"), Ok("cleanup"));
        assert_eq!(daemon_of("postfix/submission/smtpd"), Ok("smtpd"));
        assert_eq!(daemon_of("postfix"), Err(Ignored::NotPostfix));
        assert_eq!(daemon_of("dovecot"), Err(Ignored::NotPostfix));
        assert_eq!(daemon_of("amavis/x"), Err(Ignored::NotPostfix));
    }

    #[test]
    fn queue_ids() {
        assert_eq!(
            split_queue_id("4F1A22C0E1: removed"),
            Some(("4F1A22C0E1", "removed"))
        );
        assert_eq!(
            split_queue_id("4dZt2x0TTwzJr9y: removed"),
            Some(("4dZt2x0TTwzJr9y", "removed"))
        );
        assert_eq!(split_queue_id("NOQUEUE: reject: RCPT"), None);
        assert_eq!(split_queue_id("warning: hostname x"), None);
        assert_eq!(split_queue_id("connect from x[1.2.3.4]"), None);
    }

    #[test]
    fn cleanup_lines() {
        assert_eq!(
            cleanup_line("message-id=<a@b>"),
            Ok(LineKind::MessageId("<a@b>"))
        );
        assert_eq!(
            cleanup_line("info: header Subject: Re: lunch from mail.example[10.0.0.1]; from=<a@x> to=<all@x> proto=ESMTP helo=<c>"),
            Ok(LineKind::Header(HeaderName::Subject, "Re: lunch"))
        );
        // A subject that itself says "from ...;" keeps it: the leftmost ` from X;` followed by
        // the envelope context is the one Postfix wrote.
        assert_eq!(
            cleanup_line(
                "info: header Subject: mail from bob; thanks from local; from=<a@x>: stormwatch"
            ),
            Ok(LineKind::Header(
                HeaderName::Subject,
                "mail from bob; thanks"
            ))
        );
        assert_eq!(
            cleanup_line(
                "warning: header References: <r@x>??<s@x> from local; from=<a@x> to=<b@x>"
            ),
            Ok(LineKind::Header(HeaderName::References, "<r@x>??<s@x>"))
        );
        assert_eq!(
            cleanup_line("info: header in-reply-to: <p@x> from h[1.2.3.4];"),
            Ok(LineKind::Header(HeaderName::InReplyTo, "<p@x>"))
        );
        assert_eq!(
            cleanup_line("info: header X-Mailer: x from local; from=<a@x>"),
            Err(LineError::Ignored)
        );
        assert_eq!(
            cleanup_line("info: header Subject: cut off by the 200-byte limit"),
            Err(LineError::Bad)
        );
        assert_eq!(
            cleanup_line("reject: header Subject: spam from local; from=<a@x>: 5.7.1 no"),
            Ok(LineKind::Rejected)
        );
        assert_eq!(
            cleanup_line("milter-reject: END-OF-MESSAGE from x[1.2.3.4]: 5.7.1 no"),
            Ok(LineKind::Rejected)
        );
        assert_eq!(
            cleanup_line("resent-message-id=<a@b>"),
            Err(LineError::Ignored)
        );
    }

    #[test]
    fn qmgr_lines() {
        assert_eq!(
            qmgr_line("from=<ann@x.org>, size=2048, nrcpt=3000 (queue active)"),
            Ok(LineKind::Queued {
                sender: "ann@x.org",
                nrcpt: 3000
            })
        );
        assert_eq!(
            qmgr_line("from=<>, size=10, nrcpt=1 (queue active)"),
            Ok(LineKind::Queued {
                sender: "",
                nrcpt: 1
            })
        );
        assert_eq!(qmgr_line("removed"), Ok(LineKind::Removed));
        assert_eq!(
            qmgr_line("from=<a@x>, status=expired, returned to sender"),
            Err(LineError::Ignored)
        );
        assert_eq!(
            qmgr_line("from=<a@x>, size=1, nrcpt=lots (queue active)"),
            Err(LineError::Bad)
        );
        assert_eq!(
            qmgr_line("to=<b@x>, relay=none, status=deferred"),
            Err(LineError::Ignored)
        );
    }

    #[test]
    fn folded_encoded_words_are_rejoined() {
        assert_eq!(
            unfold_encoded_words("=?UTF-8?B?UmU6?=??=?UTF-8?B?IGhp?="),
            "=?UTF-8?B?UmU6?= =?UTF-8?B?IGhp?="
        );
        assert_eq!(
            unfold_encoded_words("=?UTF-8?Q?a?=? =?UTF-8?Q?b?="),
            "=?UTF-8?Q?a?= =?UTF-8?Q?b?="
        );
        assert_eq!(unfold_encoded_words("Really?? yes"), "Really?? yes");
        assert_eq!(unfold_encoded_words("=?UTF-8?Q?a?="), "=?UTF-8?Q?a?=");
    }

    #[test]
    fn folds_in_logged_subjects_are_unfolded() {
        // smtplib folded the reply's subject before "read" (newline, space).
        assert_eq!(
            unfold_logged_folds("AW: [all-staff] Quarterly results =?utf-8?b?4oCT?= please? read"),
            "AW: [all-staff] Quarterly results =?utf-8?b?4oCT?= please read"
        );
        // Newline and tab.
        assert_eq!(unfold_logged_folds("Re: long??subject"), "Re: long subject");
        assert_eq!(unfold_logged_folds("Plain subject"), "Plain subject");
        assert_eq!(unfold_logged_folds("What???"), "What???");
        assert_eq!(unfold_logged_folds("Really?? yes"), "Really? yes");
    }
}
