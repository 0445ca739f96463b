//! Deliberately malformed lines for the `mixed` scenario, one of each kind
//! the contract names: not JSON, JSON that is not an object, a missing
//! required field, a negative count, an unparseable timestamp, a wrong-typed
//! field. A consumer must count and report each and carry on.

use super::event::{write_timestamp, Line, TsForm};
use serde_json::json;

/// The label carried by malformed lines that are JSON objects.
pub(crate) const LABEL: &str = "malformed";

/// Builds the malformed lines, spread evenly over `[start, start + span)`.
pub(crate) fn lines(start: i64, span: i64) -> Vec<Line> {
    let at = |k: i64| start + span * (2 * k + 1) / 16;
    let ts = |ms: i64| {
        let mut s = String::new();
        write_timestamp(&mut s, ms, TsForm::Utc);
        s
    };
    let texts = [
        // Not JSON at all.
        "{oops".to_owned(),
        // JSON, but not an object.
        "[]".to_owned(),
        // Missing the required `sender`.
        json!({
            "timestamp": ts(at(2)),
            "message_id": "<no-sender.1@northwind.example>",
            "recipient_count": 3,
            "subject": "Minutes",
            "label": LABEL,
        })
        .to_string(),
        // A negative recipient count.
        json!({
            "timestamp": ts(at(3)),
            "message_id": "<negative.1@northwind.example>",
            "sender": "ann.adams@northwind.example",
            "recipient_count": -4,
            "subject": "Rota",
            "label": LABEL,
        })
        .to_string(),
        // An unparseable timestamp.
        json!({
            "timestamp": "14/11/2016 09:47:12",
            "message_id": "<badtime.1@northwind.example>",
            "sender": "ben.baker@northwind.example",
            "recipient_count": 2,
            "label": LABEL,
        })
        .to_string(),
        // A wrong-typed message id.
        json!({
            "timestamp": ts(at(5)),
            "message_id": 4_471_222,
            "sender": "carla.clarke@northwind.example",
            "recipient_count": 1,
            "label": LABEL,
        })
        .to_string(),
        // Invalid JSON: a trailing comma.
        format!(
            "{{\"timestamp\":\"{}\",\"message_id\":\"<comma.1@northwind.example>\",\
             \"sender\":\"dan.davies@northwind.example\",\"recipient_count\":1,}}",
            ts(at(6))
        ),
    ];
    texts
        .into_iter()
        .enumerate()
        .map(|(k, text)| Line::Raw {
            ts: at(k as i64),
            text,
        })
        .collect()
}
