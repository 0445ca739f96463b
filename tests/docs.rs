//! Keeps the README's configuration reference in step with the code: every key of the default
//! configuration is documented there, and every documented key exists.

use stormwatch::config::Config;

fn leaf_keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) if !inner.is_empty() => leaf_keys(&path, inner, out),
            _ => out.push(path),
        }
    }
}

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README")
}

#[test]
fn every_config_key_is_in_the_readme() {
    let mut config = Config::default();
    // Optional keys are absent from the serialized defaults; give them values to list them.
    config.http.bearer_token = Some("x".into());
    config.sinks.alertmanager.url = Some("x".into());
    config.sinks.webhook.url = Some("x".into());
    let table = toml::Table::try_from(&config).expect("config serializes");
    let mut keys = Vec::new();
    leaf_keys("", &table, &mut keys);
    let readme = readme();
    let missing: Vec<&String> = keys
        .iter()
        .filter(|key| {
            let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
            // Rule keys are documented grouped: `rules.early.enabled` / `.min_replies` / ...
            let grouped =
                readme.contains(&format!("`{section}.")) && readme.contains(&format!("`.{leaf}`"));
            let documented = readme.contains(&format!("`{key}`")) || grouped;
            !documented
        })
        .collect();
    assert!(missing.is_empty(), "undocumented config keys: {missing:?}");
}

#[test]
fn readme_shows_the_test_command() {
    assert!(readme().contains("cargo test"));
}
