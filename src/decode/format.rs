//! Which kind of record the input carries (`input.format`), chosen once per input: the
//! contract's JSON events, Postfix syslog lines, or Exchange message-tracking CSV rows. The
//! name is what the configuration and `stormwatch replay --format` accept.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum InputFormat {
    /// One contract event (section 1) per record.
    #[default]
    #[serde(rename = "json")]
    Json,
    /// Postfix syslog lines, raw or wrapped in a shipper's JSON.
    #[serde(rename = "postfix")]
    Postfix,
    /// Exchange Server message-tracking log CSV rows, with their `#` header lines.
    #[serde(rename = "exchange-tracking")]
    ExchangeTracking,
}

impl InputFormat {
    /// Every format, for help texts and error messages.
    pub const ALL: [InputFormat; 3] = [
        InputFormat::Json,
        InputFormat::Postfix,
        InputFormat::ExchangeTracking,
    ];

    /// The name used in the configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            InputFormat::Json => "json",
            InputFormat::Postfix => "postfix",
            InputFormat::ExchangeTracking => "exchange-tracking",
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown input format {0:?}; expected json, postfix or exchange-tracking")]
pub struct UnknownFormat(pub String);

impl FromStr for InputFormat {
    type Err = UnknownFormat;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        InputFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownFormat(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for format in InputFormat::ALL {
            assert_eq!(format.name().parse::<InputFormat>(), Ok(format));
        }
        assert_eq!("Postfix".parse::<InputFormat>(), Ok(InputFormat::Postfix));
        assert!("exchange".parse::<InputFormat>().is_err());
    }
}
