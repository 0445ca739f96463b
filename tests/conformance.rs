//! The contract's conformance cases (copied from the shared suite into tests/conformance/):
//! each input through `stormwatch replay` must give exactly its expected alerts, compared as
//! sets on the contract's required fields.

mod common;

use std::path::Path;

fn check(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let input = dir.join(format!("{name}.jsonl"));
    let expected =
        std::fs::read(dir.join(format!("{name}.expected.jsonl"))).expect("expected file");
    let output = common::binary()
        .arg("replay")
        .arg(&input)
        .output()
        .expect("stormwatch runs");
    assert!(output.status.success(), "{name}: exit {:?}", output.status);
    let mut got: Vec<String> = common::json_lines(&output.stdout)
        .iter()
        .map(common::canonical)
        .collect();
    let mut want: Vec<String> = common::json_lines(&expected)
        .iter()
        .map(common::canonical)
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{name}: alerts differ from the contract's");
}

macro_rules! cases {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] fn $test() { check($name); })*

        /// Every case file in the directory has a test above, so a new case cannot be missed.
        #[test]
        fn every_case_file_is_tested() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
            let mut on_disk: Vec<String> = std::fs::read_dir(dir)
                .expect("conformance dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".jsonl") && !n.ends_with(".expected.jsonl"))
                .map(|n| n.trim_end_matches(".jsonl").to_string())
                .collect();
            on_disk.sort();
            let mut tested = vec![$($name.to_string()),*];
            tested.sort();
            assert_eq!(on_disk, tested);
        }
    };
}

cases! {
    amplification_rule => "amplification-rule",
    duplicates_and_ids => "duplicates-and-ids",
    early_rule => "early-rule",
    escalation => "escalation",
    exchange_window_boundary => "exchange-window-boundary",
    lateness => "lateness",
    malformed_and_future => "malformed-and-future",
    nulls_ids_and_roots => "nulls-ids-and-roots",
    restart_within_window => "restart-within-window",
    storm_end_and_restart => "storm-end-and-restart",
    subject_prefixes => "subject-prefixes",
    sustained_rule => "sustained-rule",
    thread_unification => "thread-unification",
    timestamps_and_recipients => "timestamps-and-recipients",
}
