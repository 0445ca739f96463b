//! `STORMWATCH_SECTION__KEY=value` overrides: how a container or a Kubernetes Secret sets a key
//! without editing the file.
//!
//! Environment values are strings; the key's type in the defaults decides how the value is read
//! (`STORMWATCH_DETECTION__MIN_RECIPIENTS=1000` is an integer, `STORMWATCH_KAFKA__GROUP_ID=123`
//! stays a string). `STORMWATCH_KAFKA__PROPERTIES__SASL_PASSWORD` sets the librdkafka property
//! `sasl.password`: underscores become dots there, since librdkafka names use dots. Variables
//! without a `__` (such as a future `STORMWATCH_LOG`) are not configuration and are left alone.

use super::{Config, ConfigError};

const PREFIX: &str = "STORMWATCH_";

/// Merges every `STORMWATCH_*__*` variable into `table`, over what the file said.
pub(super) fn apply_overrides(
    table: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
    let mut overrides: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name.contains("__"))
        .collect();
    // Deterministic order, so the same environment always gives the same result and error.
    overrides.sort();
    for (var, raw) in overrides {
        let path = key_path(&var);
        let value = typed_value(&defaults, &path, &raw).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        set_path(table, &path, value).map_err(|message| ConfigError::Env { var, message })?;
    }
    Ok(())
}

/// `STORMWATCH_RULES__EARLY__ENABLED` -> `["rules", "early", "enabled"]`;
/// `STORMWATCH_KAFKA__PROPERTIES__SASL_PASSWORD` -> `["kafka", "properties", "sasl.password"]`.
fn key_path(var: &str) -> Vec<String> {
    let rest = var.get(PREFIX.len()..).unwrap_or_default();
    let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.len() >= 3 && path[0] == "kafka" && path[1] == "properties" {
        let property = path[2..].join("_").replace('_', ".");
        path.truncate(2);
        path.push(property);
    }
    path
}

/// Reads `raw` as the type the default configuration has at `path` (a string when the key has
/// no default value, as optional keys do; unknown keys are reported later by deserialization).
fn typed_value(defaults: &toml::Table, path: &[String], raw: &str) -> Result<toml::Value, String> {
    let mut node: Option<&toml::Value> = None;
    let mut table = Some(defaults);
    for segment in path {
        node = table.and_then(|t| t.get(segment));
        table = node.and_then(toml::Value::as_table);
    }
    match node {
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected an integer, got {raw:?}")),
        Some(toml::Value::Boolean(_)) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        Some(toml::Value::Table(_)) => Err("names a section, not a key".to_string()),
        _ => Ok(toml::Value::String(raw.to_string())),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("names no key".to_string());
    };
    let mut node = table;
    for segment in parents {
        let entry = node
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{segment}` is a value in the config file, not a section"))?;
    }
    node.insert(last.clone(), value);
    Ok(())
}
