//! The settings of the allocator the `stormwatch` binary runs with (mimalloc, its global
//! allocator; the Kafka bench and the replay-ratio example use the same).

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, `mi_option_e`; the same index in its v2
/// and v3). `libmimalloc-sys` names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep memory it has freed instead of returning it to the OS.
///
/// Why: by default mimalloc returns freed memory to the OS a second after the free. While the
/// engine's maps grow towards their caps, each growth frees the old table and slab, the memory
/// goes back to the OS, and the next growth faults it in again: the kernel zeroed every page
/// anew, about 4,600 page faults and 1.5 to 2.5 s of system time in a replay of 5M events
/// against about 700 faults and 0.9 s kept (BENCHMARKS.md, session 5). Memory is still bounded:
/// what is kept is reused, so the resident size stays at its peak, and the peak is bounded by
/// the `limits` caps.
///
/// Call it first thing in `main`, before the process has allocated much.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` writes one of mimalloc's option cells; any value is valid for
    // this option (-1 means never purge). It is not thread-safe, and is called while the
    // process has one thread.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_the_option_mimalloc_reads_and_is_set_to_never() {
        // The option's index is not named by libmimalloc-sys: check it against mimalloc
        // itself. Option 15's default is mimalloc v3's purge delay, 1000 ms (`options.c`).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads an option cell.
            let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(before, 1000, "mimalloc's default purge delay");
        }
        keep_freed_memory();
        // SAFETY: reads an option cell.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, -1);
    }
}
