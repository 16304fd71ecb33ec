//! Giving freed heap memory back to the system after a storm.
//!
//! glibc's allocator keeps what the program frees inside its heaps for
//! reuse. After a reconnect storm (thousands of request heads, handshake
//! replies and first writes allocated at once and freed a moment later)
//! that is megabytes the hub no longer uses, held in RSS for good, because
//! the long-lived connection state allocated between them keeps the heap
//! from shrinking at its top. A thread looks every `CHECK_EVERY` at how
//! much is free inside the heaps and, past the slack the operator allows
//! (`--memory-trim-slack`), asks glibc to return the free pages
//! (`malloc_trim`, which releases whole free pages anywhere in the heap).
//! It never touches memory in use and does nothing on other platforms.

use std::time::Duration;

/// How often the heap's free bytes are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Whether free bytes inside the heap exceed what may stay there: the
/// slack above what the last trim could not give back (`left`: free
/// pieces smaller than a page, between blocks in use), so a fragmented
/// heap is not trimmed again every second for nothing.
fn worth_trimming(free_bytes: u64, slack: u64, left: u64) -> bool {
    slack > 0 && free_bytes > left.saturating_add(slack)
}

/// Free bytes inside the allocator's heaps (0 where that is not known).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn free_in_heap() -> u64 {
    // SAFETY: `mallinfo2` takes no arguments and returns a plain struct by
    // value (glibc ≥ 2.33); it only reads the allocator's own bookkeeping.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks as u64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn free_in_heap() -> u64 {
    0
}

/// Return the heaps' free pages to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: `malloc_trim` takes a byte count and only releases pages the
    // allocator holds free; it locks each arena while it walks it.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

/// Look at the heap every `CHECK_EVERY` from a thread of its own, and trim
/// it when more than `slack` bytes lie free in it (0: never).
pub fn spawn(slack: u64) -> std::io::Result<()> {
    if slack == 0 || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("memory-trim".into())
        .spawn(move || {
            // Free bytes the last trim left (its floor while they last).
            let mut left = 0;
            loop {
                std::thread::sleep(CHECK_EVERY);
                let free = free_in_heap();
                left = left.min(free);
                if worth_trimming(free, slack, left) {
                    trim();
                    left = free_in_heap();
                    log::debug!(
                        "returned free heap memory: {} KiB free before, {} KiB after",
                        free / 1024,
                        left / 1024
                    );
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_past_the_slack() {
        assert!(!worth_trimming(10 << 20, 0, 0), "0 turns it off");
        assert!(!worth_trimming(8 << 20, 8 << 20, 0));
        assert!(worth_trimming((8 << 20) + 1, 8 << 20, 0));
        // What the last trim could not return does not count again.
        assert!(!worth_trimming(12 << 20, 8 << 20, 5 << 20));
        assert!(worth_trimming((13 << 20) + 1, 8 << 20, 5 << 20));
    }

    /// The process's resident set in KiB.
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: u64 = statm
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("rss");
        pages * 4
    }

    /// The two calls are sound and do what they say: freeing many blocks
    /// between kept ones leaves their pages resident; a trim returns them.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_after_freeing_gives_memory_back() {
        let mut kept = Vec::new();
        let mut freed = Vec::new();
        for i in 0..20_000u32 {
            let b = vec![(i % 251) as u8; 2048];
            if i % 8 == 0 {
                kept.push(b);
            } else {
                freed.push(b);
            }
        }
        drop(freed);
        let free = free_in_heap();
        assert!(free > 30 << 20, "35 MB freed, {free} B free in the heap");
        let before = rss_kib();
        trim();
        let after = rss_kib();
        assert!(
            after + 16 * 1024 < before,
            "RSS {before} KiB -> {after} KiB"
        );
        // What was kept is intact.
        assert!(kept
            .iter()
            .enumerate()
            .all(|(k, b)| b.len() == 2048 && b.iter().all(|&x| x == ((k * 8) % 251) as u8)));
    }
}
