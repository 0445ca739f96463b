//! `stormwatch mock-broker` (hidden): librdkafka's mock cluster, in process, listening on
//! 127.0.0.1, with the topics asked for; it prints its bootstrap address and runs until SIGTERM
//! or SIGINT. For tests whose Kafka clients cannot use another broker: Debian 12's rsyslog
//! omkafka links librdkafka 2.0.2, which cannot read Tansu 0.6.0's ApiVersions v3 response
//! (tests/e2e/postfix/README.md explains why), while the mock cluster answers every librdkafka.
//! It is a test broker: in memory, one node, gone when the process stops.

use anyhow::Context;
use clap::Args;
use rdkafka::mocking::MockCluster;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `stormwatch mock-broker`.
#[derive(Debug, Args)]
pub struct MockBrokerArgs {
    /// A topic to create, `NAME` (one partition) or `NAME:PARTITIONS`; repeatable.
    #[arg(long = "topic", value_name = "NAME[:PARTITIONS]", value_parser = parse_topic)]
    topics: Vec<TopicSpec>,
    /// Also write the bootstrap address to this file (written aside, then renamed into
    /// place), so that a script can wait for the file instead of parsing stdout.
    #[arg(long, value_name = "FILE")]
    address_file: Option<PathBuf>,
}

/// A topic to create on the mock cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopicSpec {
    name: String,
    partitions: i32,
}

/// Parses `NAME` or `NAME:PARTITIONS` (1 to 1024 partitions).
fn parse_topic(spec: &str) -> Result<TopicSpec, String> {
    let (name, partitions) = match spec.rsplit_once(':') {
        Some((name, count)) => {
            let partitions = count
                .parse::<i32>()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| format!("partitions must be 1 to 1024, not {count:?}"))?;
            (name, partitions)
        }
        None => (spec, 1),
    };
    let valid = !name.is_empty()
        && name.len() <= 249
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(format!(
            "{name:?} is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(TopicSpec {
        name: name.to_string(),
        partitions,
    })
}

/// Runs the mock cluster until SIGTERM or SIGINT.
pub fn run(args: MockBrokerArgs) -> anyhow::Result<ExitCode> {
    let cluster = MockCluster::new(1).context("cannot start librdkafka's mock cluster")?;
    for topic in &args.topics {
        cluster
            .create_topic(&topic.name, topic.partitions, 1)
            .with_context(|| format!("cannot create topic {}", topic.name))?;
    }
    let address = cluster.bootstrap_servers();
    if let Some(path) = &args.address_file {
        write_whole(path, &address)
            .with_context(|| format!("cannot write the address to {}", path.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{address}")?;
    stdout.flush()?;
    drop(stdout);
    wait_for_signal()?;
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path.tmp`, then renames it to `path`: a reader never sees half of it.
fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    std::fs::write(&aside, format!("{text}\n"))?;
    std::fs::rename(&aside, path)
}

/// Blocks until SIGTERM or SIGINT.
fn wait_for_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal runtime")?;
    runtime.block_on(async {
        #[cfg(unix)]
        {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot listen for SIGTERM")?;
            tokio::select! {
                _ = terminate.recv() => {}
                result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
            }
        }
        #[cfg(not(unix))]
        tokio::signal::ctrl_c()
            .await
            .context("cannot listen for Ctrl-C")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_a_name_with_optional_partitions() {
        assert_eq!(
            parse_topic("mail-log"),
            Ok(TopicSpec {
                name: "mail-log".into(),
                partitions: 1
            })
        );
        assert_eq!(
            parse_topic("mail.events_v2:4"),
            Ok(TopicSpec {
                name: "mail.events_v2".into(),
                partitions: 4
            })
        );
    }

    #[test]
    fn bad_topics_are_refused() {
        for spec in [
            "", ":3", "a:0", "a:-1", "a:x", "a:1025", "bad name", "a/b:2",
        ] {
            assert!(parse_topic(spec).is_err(), "{spec:?} accepted");
        }
    }
}
