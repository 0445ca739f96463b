//! The configuration: one TOML file, every key defaulted, `STORMWATCH_SECTION__KEY` environment
//! overrides (contract sections 5 and 6).
//!
//! Each section is one struct with `deny_unknown_fields` and a doc comment on every key, as Vector
//! does: a typo in the file is an error naming the key, never a silently ignored setting. Loading
//! goes file -> TOML table -> environment overrides merged in -> typed structs (with the failing
//! key's path in any error) -> validation of values that types alone cannot check.

mod duration;
mod env;
mod sections;

pub use sections::*;

use std::path::Path;
use thiserror::Error;

/// Why a configuration could not be loaded. Each variant names the key or variable at fault, so
/// the one-line message an operator sees says what to fix.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given on the command line.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The path given on the command line.
        path: String,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// An environment override has a value of the wrong type for its key.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with its value.
        message: String,
    },
    /// A key is unknown or has a value of the wrong type.
    #[error("config key `{key}`: {message}")]
    Key {
        /// The dotted path of the key (`detection.min_recipients`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Loads the configuration: defaults, then the file (when given), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly (tests pass their own).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let shown = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: shown.clone(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: shown,
                        message: e.message().to_string() + &line_of(&text, e.span()),
                    })?
            }
            None => toml::Table::new(),
        };
        env::apply_overrides(&mut table, vars)?;
        Self::from_table(table)
    }

    /// Parses a configuration from TOML text (no environment), for tests and examples.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: "<string>".into(),
                message: e.message().to_string(),
            })?;
        Self::from_table(table)
    }

    fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
        // Partial sections (`[rules.early] enabled = false`) take the rest of their keys from
        // that section's own defaults, so the defaults are laid under what was given.
        let mut merged = toml::Table::try_from(Config::default()).unwrap_or_default();
        merge(&mut merged, table);
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
                ConfigError::Key {
                    key: e.path().to_string(),
                    message: e.inner().to_string(),
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    /// The effective configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base_table)), toml::Value::Table(over_table)) => {
                merge(base_table, over_table);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
