//! The settings of the allocator the `stormwatch` binary runs with (mimalloc, its global
//! allocator; the Kafka bench and the replay-ratio example use the same), and how the kernel
//! backs its memory.

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, `mi_option_e`; the same index in its v2
/// and v3). `libmimalloc-sys` names no constant for it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to keep memory it has freed instead of returning it to the OS.
///
/// Why: by default mimalloc returns freed memory to the OS a second after the free. While the
/// engine's maps grow towards their caps, each growth frees the old table and slab, the memory
/// goes back to the OS, and the next growth faults it in again, the kernel zeroing every page
/// anew. A replay of 5M events took 3,300 to 4,900 page faults, against about 660 with freed
/// memory kept, and ran 8% faster kept (BENCHMARKS.md, session 5). Memory is still bounded:
/// what is kept is reused, so the resident size stays at its peak, and the `limits` caps bound
/// the peak. (The service reserves its maps at start and hardly frees any.)
///
/// Call it first thing in `main`, before other threads start.
pub fn keep_freed_memory() {
    // SAFETY: `mi_option_set` stores a value in one of mimalloc's option cells, and any value
    // is valid for this option (-1: never purge). mimalloc reads the cell unsynchronized, so
    // it is set before other threads start (or, in the unit test, in a process whose allocator
    // is not mimalloc).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Asks the kernel not to back this process's memory with transparent huge pages (Linux
/// `prctl(PR_SET_THP_DISABLE)`; elsewhere nothing to do). For `replay`, whose maps fill from
/// empty while it runs.
///
/// Why: mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so each first touch of
/// the maps' growing slabs and indexes faulted in and zeroed 2 MiB at once. On the benchmark
/// machine (a KVM guest) those faults cost twice the system time of the same memory in 4 KiB
/// pages: a 5M-event replay spent 1.1 to 1.7 s in the kernel with them and 0.7 s without, in
/// 8 runs alternated, for a few percent more user time (more TLB misses; BENCHMARKS.md,
/// session 9). The service keeps
/// huge pages: it backs its maps once at start (`limits.pretouch`), and afterwards fewer TLB
/// misses are what counts.
pub fn avoid_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only (passed as the `unsigned
        // long`s the kernel reads) and sets a flag of this process's address space, which a
        // forked child would inherit (replay forks none); it touches no memory of ours.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Asks the kernel to back the whole pages inside `start..start + len` now, as a write to each
/// would (Linux `madvise(MADV_POPULATE_WRITE)`, 5.14 and later), without changing what they
/// hold. Only a hint to callers: on an error (an older kernel, or anywhere but Linux, where it
/// does nothing) each page is still backed at its first write, one fault at a time.
///
/// Why: on this kind of VM a page fault costs about 2 us; a 5M-event replay takes about
/// 100,000 of them, and handling them was 7.7% of its profile, 1.7% with the slabs populated:
/// the kernel backs a populated range without a trap per page (BENCHMARKS.md, session 10).
pub(crate) fn populate_for_writing(start: *mut u8, len: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let page = page_size();
        let first = (start as usize).next_multiple_of(page);
        let end = (start as usize).saturating_add(len) / page * page;
        if end > first {
            // SAFETY: MADV_POPULATE_WRITE reads and writes no byte of the range: it backs its
            // pages as a write fault would and keeps their contents, so no object in it can
            // change. An address outside any mapping is refused with an error.
            let result = unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    end - first,
                    libc::MADV_POPULATE_WRITE,
                )
            };
            if result != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
    Ok(())
}

/// The kernel's page size (4 KiB on x86-64, 4, 16 or 64 KiB on arm64); 4 KiB if it cannot be
/// read.
#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf reads a system value; it takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|&size| size > 0)
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn transparent_huge_pages_are_off_for_the_process_after_asking() {
        avoid_transparent_huge_pages().expect("prctl(PR_SET_THP_DISABLE) on Linux");
        let unused: libc::c_ulong = 0;
        // SAFETY: PR_GET_THP_DISABLE reads the flag; it takes no pointers.
        let disabled =
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, unused, unused, unused, unused) };
        assert_eq!(disabled, 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn populating_backs_the_whole_pages_and_keeps_their_contents() {
        const PAGES: usize = 16;
        let page = page_size();
        // Whole pages only, one by one: no huge pages of any size for this process.
        avoid_transparent_huge_pages().expect("prctl(PR_SET_THP_DISABLE) on Linux");
        // SAFETY: a fresh private anonymous mapping, unmapped below; no pointer escapes.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGES * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let bytes = base.cast::<u8>();
        let resident = || {
            let mut pages = [0u8; PAGES];
            // SAFETY: `pages` has one byte per page of the mapping.
            let result = unsafe { libc::mincore(base, PAGES * page, pages.as_mut_ptr()) };
            assert_eq!(result, 0);
            pages.map(|page| page & 1 == 1)
        };
        // SAFETY: inside the mapping.
        unsafe { bytes.add(page + 5).write(42) };
        assert_eq!(resident().iter().filter(|&&r| r).count(), 1);

        // From the middle of page 2 to the middle of page 12: pages 3 to 11 are whole.
        // SAFETY: inside the mapping.
        let start = unsafe { bytes.add(2 * page + 100) };
        if let Err(error) = populate_for_writing(start, 10 * page) {
            // Before Linux 5.14 (or in a sandbox without it) there is nothing to test: the
            // callers take the error as "pages are backed as they are written".
            assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
            eprintln!("MADV_POPULATE_WRITE is not supported here: {error}");
            // SAFETY: the mapping made above, no longer used.
            assert_eq!(unsafe { libc::munmap(base, PAGES * page) }, 0);
            return;
        }
        let after = resident();
        for (page, &is_resident) in after.iter().enumerate() {
            let expected = page == 1 || (3..12).contains(&page);
            assert_eq!(is_resident, expected, "page {page}");
        }
        // SAFETY: inside the mapping.
        assert_eq!(unsafe { bytes.add(page + 5).read() }, 42);
        assert_eq!(unsafe { bytes.add(3 * page).read() }, 0);
        // SAFETY: the mapping made above, no longer used.
        assert_eq!(unsafe { libc::munmap(base, PAGES * page) }, 0);
    }

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
