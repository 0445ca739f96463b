//! One RFC 4180 CSV row, as Exchange writes its message-tracking logs: fields separated by
//! commas, a field containing a comma or quote wrapped in double quotes, a quote inside one
//! doubled. Fields borrow from the row unless they had doubled quotes.

use std::borrow::Cow;

/// A row whose quoting is broken (a quoted field never closed, or text after its closing
/// quote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRow;

/// Splits `row` into its fields, appending them to `out` (cleared first).
pub fn split_row<'a>(row: &'a str, out: &mut Vec<Cow<'a, str>>) -> Result<(), BadRow> {
    out.clear();
    let mut rest = row;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let (field, after) = quoted_field(quoted)?;
            out.push(field);
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(()),
                None => return Err(BadRow),
            }
        } else {
            match rest.find(',') {
                Some(at) => {
                    out.push(Cow::Borrowed(rest.get(..at).unwrap_or_default()));
                    rest = rest.get(at + 1..).unwrap_or_default();
                }
                None => {
                    out.push(Cow::Borrowed(rest));
                    return Ok(());
                }
            }
        }
    }
}

/// A quoted field's content (after the opening quote) and what follows its closing quote.
fn quoted_field(text: &str) -> Result<(Cow<'_, str>, &str), BadRow> {
    let mut owned: Option<String> = None;
    let mut start = 0;
    let mut search = 0;
    loop {
        let at = text
            .get(search..)
            .and_then(|t| t.find('"'))
            .map(|i| i + search)
            .ok_or(BadRow)?;
        if text.get(at + 1..at + 2) == Some("\"") {
            // A doubled quote: one quote in the value.
            let buffer = owned.get_or_insert_with(String::new);
            buffer.push_str(text.get(start..=at).unwrap_or_default());
            start = at + 2;
            search = at + 2;
            continue;
        }
        let tail = text.get(start..at).unwrap_or_default();
        let after = text.get(at + 1..).unwrap_or_default();
        return Ok(match owned {
            Some(mut buffer) => {
                buffer.push_str(tail);
                (Cow::Owned(buffer), after)
            }
            None => (Cow::Borrowed(tail), after),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(row: &str) -> Result<Vec<String>, BadRow> {
        let mut out = Vec::new();
        split_row(row, &mut out)?;
        Ok(out.into_iter().map(Cow::into_owned).collect())
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(split("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(split("").unwrap(), [""]);
        assert_eq!(split("a,").unwrap(), ["a", ""]);
        assert_eq!(
            split(r#""Re: lunch, today",x"#).unwrap(),
            ["Re: lunch, today", "x"]
        );
        assert_eq!(
            split(r#"a,"say ""hi""",b"#).unwrap(),
            ["a", r#"say "hi""#, "b"]
        );
        assert_eq!(split(r#""""#).unwrap(), [""]);
        assert_eq!(split(r#""""""#).unwrap(), ["\""]);
        assert_eq!(split(r#"a,"x;y""#).unwrap(), ["a", "x;y"]);
    }

    #[test]
    fn broken_quoting_is_refused() {
        for row in [r#""open"#, r#""a"b,c"#, r#"x,"unterminated"#] {
            assert_eq!(split(row), Err(BadRow), "{row}");
        }
    }

    #[test]
    fn quoted_fields_without_doubled_quotes_borrow() {
        let mut out = Vec::new();
        split_row(r#""a,b",c"#, &mut out).unwrap();
        assert!(matches!(out.first(), Some(Cow::Borrowed("a,b"))));
    }
}
