//! Synthetic people, sender address forms and message ids.
//!
//! A person is a number; its name and address are derived from it, so the
//! generator never stores names and every person number maps to a distinct
//! address.

use rand::Rng;
use std::fmt;

/// First names: (display form, ASCII local-part form).
const FIRST: [(&str, &str); 64] = [
    ("Alice", "alice"),
    ("Amir", "amir"),
    ("Anna", "anna"),
    ("Ben", "ben"),
    ("Bola", "bola"),
    ("Carla", "carla"),
    ("Chen", "chen"),
    ("Chloe", "chloe"),
    ("Dan", "dan"),
    ("Deepa", "deepa"),
    ("Eilidh", "eilidh"),
    ("Emma", "emma"),
    ("Farah", "farah"),
    ("Finn", "finn"),
    ("Gareth", "gareth"),
    ("Grace", "grace"),
    ("Hannah", "hannah"),
    ("Harry", "harry"),
    ("Imran", "imran"),
    ("Isla", "isla"),
    ("Jack", "jack"),
    ("José", "jose"),
    ("Kate", "kate"),
    ("Kwame", "kwame"),
    ("Laura", "laura"),
    ("Liam", "liam"),
    ("Małgorzata", "malgorzata"),
    ("Mark", "mark"),
    ("Mei", "mei"),
    ("Mohammed", "mohammed"),
    ("Nadia", "nadia"),
    ("Niamh", "niamh"),
    ("Oliver", "oliver"),
    ("Olu", "olu"),
    ("Paul", "paul"),
    ("Priya", "priya"),
    ("Rachel", "rachel"),
    ("Raj", "raj"),
    ("Rhys", "rhys"),
    ("Rosa", "rosa"),
    ("Sam", "sam"),
    ("Sarah", "sarah"),
    ("Siân", "sian"),
    ("Søren", "soren"),
    ("Tariq", "tariq"),
    ("Tom", "tom"),
    ("Uma", "uma"),
    ("Victor", "victor"),
    ("Wei", "wei"),
    ("Wendy", "wendy"),
    ("Xavier", "xavier"),
    ("Yasmin", "yasmin"),
    ("Yusuf", "yusuf"),
    ("Zara", "zara"),
    ("Zoë", "zoe"),
    ("Aoife", "aoife"),
    ("Bilal", "bilal"),
    ("Ciara", "ciara"),
    ("Declan", "declan"),
    ("Esther", "esther"),
    ("Femi", "femi"),
    ("Gillian", "gillian"),
    ("Hugo", "hugo"),
    ("Ines", "ines"),
];

/// Last names: (display form, ASCII local-part form).
const LAST: [(&str, &str); 64] = [
    ("Adams", "adams"),
    ("Ahmed", "ahmed"),
    ("Baker", "baker"),
    ("Bell", "bell"),
    ("Brown", "brown"),
    ("Campbell", "campbell"),
    ("Carter", "carter"),
    ("Clarke", "clarke"),
    ("Davies", "davies"),
    ("Edwards", "edwards"),
    ("Evans", "evans"),
    ("Fraser", "fraser"),
    ("Green", "green"),
    ("Hall", "hall"),
    ("Hughes", "hughes"),
    ("Hussain", "hussain"),
    ("Jackson", "jackson"),
    ("James", "james"),
    ("Jones", "jones"),
    ("Kaur", "kaur"),
    ("Kelly", "kelly"),
    ("Khan", "khan"),
    ("King", "king"),
    ("Lewis", "lewis"),
    ("Li", "li"),
    ("MacDonald", "macdonald"),
    ("Martin", "martin"),
    ("Mitchell", "mitchell"),
    ("Moore", "moore"),
    ("Morgan", "morgan"),
    ("Müller", "mueller"),
    ("Murphy", "murphy"),
    ("Nguyen", "nguyen"),
    ("Núñez", "nunez"),
    ("O'Brien", "obrien"),
    ("Okafor", "okafor"),
    ("Owen", "owen"),
    ("Patel", "patel"),
    ("Phillips", "phillips"),
    ("Price", "price"),
    ("Roberts", "roberts"),
    ("Robinson", "robinson"),
    ("Scott", "scott"),
    ("Shah", "shah"),
    ("Singh", "singh"),
    ("Smith", "smith"),
    ("Stewart", "stewart"),
    ("Taylor", "taylor"),
    ("Thomas", "thomas"),
    ("Thompson", "thompson"),
    ("Turner", "turner"),
    ("Walker", "walker"),
    ("Wang", "wang"),
    ("Ward", "ward"),
    ("Watson", "watson"),
    ("White", "white"),
    ("Williams", "williams"),
    ("Wilson", "wilson"),
    ("Wood", "wood"),
    ("Wright", "wright"),
    ("Young", "young"),
    ("Zhang", "zhang"),
    ("Ali", "ali"),
    ("Begum", "begum"),
];

fn parts(
    person: u32,
) -> (
    (&'static str, &'static str),
    (&'static str, &'static str),
    u32,
) {
    let p = person as usize;
    (FIRST[p % 64], LAST[(p / 64) % 64], person / 4096)
}

/// Writes the local part (`first.last` or `first.last7`) of `person`.
pub(crate) fn fmt_local<W: fmt::Write>(out: &mut W, person: u32) -> fmt::Result {
    let ((_, first), (_, last), n) = parts(person);
    out.write_str(first)?;
    out.write_char('.')?;
    out.write_str(last)?;
    if n > 0 {
        write!(out, "{n}")?;
    }
    Ok(())
}

/// How a sender address is written: the contract compares senders
/// case-insensitively after taking the address inside angle brackets, so all
/// these forms of one person are one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AddrForm {
    /// `a.b@x`
    Bare,
    /// `<a.b@x>`
    Angle,
    /// `A B <a.b@x>`
    Named,
    /// `"B, A" <a.b@x>` (quotes and a comma, to exercise escaping)
    QuotedLastFirst,
    /// `<A.B@X>` (upper case, as some gateways log it)
    UpperAngle,
}

impl AddrForm {
    /// Draws a form with typical mail-log proportions.
    pub(crate) fn pick<R: Rng>(rng: &mut R) -> AddrForm {
        match rng.gen_range(0..100u32) {
            0..=54 => AddrForm::Named,
            55..=79 => AddrForm::Bare,
            80..=87 => AddrForm::Angle,
            88..=94 => AddrForm::QuotedLastFirst,
            _ => AddrForm::UpperAngle,
        }
    }
}

/// Writes `person`'s address at `domain` in `form` into `out` (cleared first).
pub(crate) fn write_sender(out: &mut String, person: u32, domain: &str, form: AddrForm) {
    out.clear();
    let ((first, _), (last, _), _) = parts(person);
    // Writing to a String cannot fail.
    match form {
        AddrForm::Bare => {
            let _ = fmt_local(out, person);
            out.push('@');
            out.push_str(domain);
        }
        AddrForm::Angle => {
            out.push('<');
            let _ = fmt_local(out, person);
            out.push('@');
            out.push_str(domain);
            out.push('>');
        }
        AddrForm::Named | AddrForm::QuotedLastFirst => {
            if form == AddrForm::Named {
                out.push_str(first);
                out.push(' ');
                out.push_str(last);
                out.push_str(" <");
            } else {
                out.push('"');
                out.push_str(last);
                out.push_str(", ");
                out.push_str(first);
                out.push_str("\" <");
            }
            let _ = fmt_local(out, person);
            out.push('@');
            out.push_str(domain);
            out.push('>');
        }
        AddrForm::UpperAngle => {
            let mut local = String::new();
            let _ = fmt_local(&mut local, person);
            out.push('<');
            out.push_str(&local.to_ascii_uppercase());
            out.push('@');
            out.push_str(&domain.to_ascii_uppercase());
            out.push('>');
        }
    }
}

/// The owned sender string of `person` (used by the small pre-built storms).
pub(crate) fn sender(person: u32, domain: &str, form: AddrForm) -> String {
    let mut s = String::new();
    write_sender(&mut s, person, domain, form);
    s
}

/// Writes the message id of background message number `n` into `out`
/// (cleared first): `<hex.hex@domain>`, the second part a per-seed salt so
/// different seeds give different ids. Distinct `n` give distinct ids.
pub(crate) fn write_message_id(out: &mut String, n: u64, salt: u64, domain: &str) {
    out.clear();
    let h = crate::generate::event::mix64(salt ^ n) & 0xFF_FFFF_FFFF;
    out.push('<');
    push_hex(out, n, 1);
    out.push('.');
    push_hex(out, h, 10);
    out.push('@');
    out.push_str(domain);
    out.push('>');
}

/// Appends `v` in lower-case hex, zero-padded to at least `width` digits
/// (a hot path: faster than `write!`).
pub(crate) fn push_hex(out: &mut String, v: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - v.leading_zeros() as usize)
        .div_ceil(4)
        .max(width)
        .min(16);
    let mut text = [0u8; 16];
    for (i, slot) in text[..digits].iter_mut().rev().enumerate() {
        *slot = DIGITS[((v >> (4 * i)) & 15) as usize];
    }
    // ASCII hex digits are always valid UTF-8.
    out.push_str(std::str::from_utf8(&text[..digits]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_forms() {
        let mut s = String::new();
        write_sender(&mut s, 0, "x.example", AddrForm::Named);
        assert_eq!(s, "Alice Adams <alice.adams@x.example>");
        write_sender(&mut s, 4096 + 65, "x.example", AddrForm::UpperAngle);
        assert_eq!(s, "<AMIR.AHMED1@X.EXAMPLE>");
        write_sender(&mut s, 34 * 64, "x.example", AddrForm::QuotedLastFirst);
        assert_eq!(s, "\"O'Brien, Alice\" <alice.obrien@x.example>");
    }

    #[test]
    fn hex_and_ids() {
        let mut s = String::new();
        push_hex(&mut s, 0, 1);
        push_hex(&mut s, 0xabc, 5);
        push_hex(&mut s, u64::MAX, 1);
        assert_eq!(s, "000abcffffffffffffffff");
        write_message_id(&mut s, 0x1f, 0, "d.example");
        let h = crate::generate::event::mix64(0x1f) & 0xFF_FFFF_FFFF;
        assert_eq!(s, format!("<1f.{h:010x}@d.example>"));
    }

    #[test]
    fn distinct_people_have_distinct_addresses() {
        let mut seen = std::collections::BTreeSet::new();
        let mut s = String::new();
        for p in 0..20_000 {
            write_sender(&mut s, p, "x", AddrForm::Bare);
            assert!(seen.insert(s.clone()), "duplicate address {s}");
        }
    }
}
