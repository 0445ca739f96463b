//! `limits.pretouch`: the engine's reserved map room is backed by memory at once, and only when
//! asked. One test in a binary of its own, so that no other test's allocations move the
//! resident set it reads.

use stormwatch::config::Config;
use stormwatch::engine::Engine;

/// The process's resident set in bytes (`/proc/self/statm` counts 4 KiB pages on x86_64 and
/// aarch64 Linux).
#[cfg(target_os = "linux")]
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("a resident page count");
    pages * 4096
}

#[cfg(target_os = "linux")]
#[test]
fn pretouch_backs_the_reserved_room_which_a_reservation_alone_does_not() {
    let mut config = Config::default();
    config.limits.max_threads = 200_000;
    config.limits.max_message_ids = 2_000_000;
    config.limits.max_subjects = 10_000;
    let mut engine = Engine::from_config(&config);

    let start = resident_bytes();
    engine
        .reserve_capacity()
        .expect("a reservation of about 130 MB");
    let reserved = resident_bytes().saturating_sub(start);
    let room = engine.pretouch_reserved();
    let backed = resident_bytes().saturating_sub(start);

    // A message id's entry alone takes more than 32 bytes.
    assert!(room > 2_000_000 * 32, "room {room}");
    // The slabs are address space until touched. The hash indexes (about 14% of the room
    // here) come zeroed from the allocator: mimalloc, the binary's, leaves fresh memory
    // untouched, while the system allocator this test runs on writes the zeros at once for
    // their 64-byte alignment, so they may be backed by the reservation already.
    assert!(
        reserved < room / 4,
        "a reservation backed {reserved} of {room} bytes of room"
    );
    assert!(
        backed >= room / 10 * 9,
        "after pretouch {backed} of {room} bytes are backed ({reserved} by the reservation)"
    );
}
