//! Subjects: RFC 2047 decoding, reply/forward prefix classification and normalization.
//!
//! This module owns everything the contract says about the subject line. Events from clients
//! that give no thread identifiers, only a subject, are joined to their thread by the normalized
//! subject, and whether an event is a reply is read from its first prefix; so these rules decide
//! which thread an event counts towards and whether it counts as a reply:
//!
//! 1. [`decode_rfc2047`] turns the logged subject into text (everything else uses the decoded
//!    subject);
//! 2. [`first_prefix`] says whether it is a reply or a forward (`Fwd: Re: x` is a forward);
//! 3. [`normalize_into`] strips list tags and prefixes, collapses whitespace and lowercases, so
//!    `[all] AW[2]: Quarterly  Results` and `quarterly results` are the same thread.
//!
//! [`analyze_into`] does 2 and 3 in one pass. All of it runs per event: the common cases do not
//! allocate beyond a caller-owned buffer.

mod prefix;
mod rfc2047;

pub use prefix::{analyze_into, first_prefix, normalize, normalize_into, PrefixKind};
pub use rfc2047::decode_rfc2047;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that make prefix, tag, whitespace and encoded-word edge cases likely.
    const TOKENS: &[&str] = &[
        "Re",
        "RE",
        "re",
        "Fwd",
        "AW",
        "İLT",
        "İ",
        "ı",
        "Réf",
        "RÉF",
        "Re\u{301}f",
        "VÁ",
        "回复",
        "转发",
        "전달",
        ":",
        "：",
        "[",
        "]",
        "[2]",
        "(3)",
        "(",
        ")",
        "2",
        " ",
        "  ",
        "\t",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{85}",
        "x",
        "Research",
        "[all]",
        "Σ",
        "ß",
        "K",
        "\u{212a}",
        "=?",
        "?=",
        "=?UTF-8?B?",
        "=?utf-8?q?",
        "UmU6IA==",
        "5Zue5aSN77ya",
        "_",
        "=3A",
        "=C3",
        "=A9",
        "?",
    ];

    fn token_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(TOKENS), 0..16).prop_map(|v| v.concat())
    }

    fn check(s: &str) -> Result<(), TestCaseError> {
        let decoded = decode_rfc2047(s);
        for subject in [s, decoded.as_ref()] {
            let mut out = String::new();
            let kind = analyze_into(subject, &mut out);
            prop_assert_eq!(kind, first_prefix(subject));
            let once = normalize(subject);
            prop_assert_eq!(&out, &once);
            prop_assert_eq!(
                normalize(&once),
                once.clone(),
                "not idempotent: {:?}",
                subject
            );
            prop_assert_eq!(once.trim(), once.as_str());
            prop_assert!(!once.contains("  "));
            prop_assert!(!once.chars().any(|c| c.is_whitespace() && c != ' '));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_and_idempotent_on_any_string(s in any::<String>()) {
            check(&s)?;
        }

        #[test]
        fn never_panics_and_idempotent_on_token_soup(s in token_soup()) {
            check(&s)?;
        }

        #[test]
        fn decode_keeps_text_without_encoded_words(s in "[^=]*") {
            prop_assert_eq!(decode_rfc2047(&s), s.as_str());
        }
    }

    #[test]
    fn decode_then_classify() {
        let decoded = decode_rfc2047("=?UTF-8?B?5Zue5aSN77yaS2FmZmU=?=");
        assert_eq!(decoded, "回复：Kaffe");
        let mut out = String::new();
        assert_eq!(analyze_into(&decoded, &mut out), Some(PrefixKind::Reply));
        assert_eq!(out, "kaffe");
    }
}
