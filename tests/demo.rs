//! `stormwatch demo` end to end: the real binary, its embedded Kafka cluster, the generated
//! storms on a fast clock; it must show the storms start and end, and stop cleanly.

mod common;

#[test]
fn the_demo_shows_both_storms_start_and_end() {
    let output = common::run(
        &[
            "demo",
            "--exit-when-done",
            "--speed",
            "900",
            "--events",
            "5000",
            "--http-listen",
            "127.0.0.1:0",
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("STORM STARTED").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("storm ended").count(), 2, "{stdout}");
    assert!(stdout.contains("rule=amplification"), "{stdout}");
    assert!(stdout.contains("/api/v1/storms"), "{stdout}");
    assert!(
        stdout.contains("2 storms started, 2 ended; 0 still active"),
        "{stdout}"
    );
}
