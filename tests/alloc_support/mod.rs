//! A counting global allocator for the tests that measure heap use: per
//! thread, so tests running in parallel do not see each other. A test
//! binary installs it with
//! `#[global_allocator] static A: alloc_support::Counting = alloc_support::Counting;`.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` and `Copy`: no lazy initialization inside the allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(n: isize) {
    // `try_with`: during thread teardown the slots may be gone.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

/// Counts every allocation of the thread, then forwards it to the system
/// allocator.
pub struct Counting;

// SAFETY: every call forwards to the system allocator unchanged; the
// bookkeeping touches only const-initialized thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        add(l.size() as isize);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        add(-(l.size() as isize));
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        add(n as isize - l.size() as isize);
        System.realloc(p, l, n)
    }
}

/// Heap bytes this thread holds now.
pub fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Run `f`; return its result and the most heap it had at once, above
/// what was live when it started.
pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
    let base = live();
    PEAK.with(|p| p.set(base));
    let t = f();
    (t, PEAK.with(Cell::get) - base)
}
