//! Giving memory back to the system after a burst of large values.
//!
//! glibc's malloc serves a block of 128 KiB or more with an mmap of its own,
//! but raises that threshold to the size of each such block freed (up to 32
//! MiB), so after the first large value, large buffers come from the arenas,
//! which keep freed memory resident: 60 clients each sending a 4 MB value
//! left ~220 MB resident for good. Fixing the threshold instead (mallopt)
//! returned the memory but mmapped and faulted in every large buffer afresh,
//! which halved req/s for 256 KiB and 2 MB values; jemalloc would mean a C
//! build and an allocator swap for the whole request path.
//!
//! So the allocator stays glibc's, wrapped to count the bytes of large
//! blocks freed. Once a burst has freed `WAKE_AFTER` of them, a thread that
//! otherwise sleeps waits for the burst to end (less than `WAKE_AFTER`
//! freed in `QUIET`) and calls `malloc_trim`, which hands every free page of
//! every arena back. Under a steady load of large values it never trims (the
//! memory is in use again at once); while idle it never wakes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// Blocks this large are counted when freed: those the arenas keep after
/// glibc's threshold has risen. Smaller ones cost no atomic operation.
const LARGE: usize = 64 * 1024;

/// Large bytes freed since the last trim that make a trim worth waiting for.
const WAKE_AFTER: usize = 32 << 20;

/// A burst is over when less than `WAKE_AFTER` was freed in this long.
const QUIET: Duration = Duration::from_secs(1);

/// Large bytes freed since the last trim.
static FREED: AtomicUsize = AtomicUsize::new(0);

/// The trimming thread, once started.
static TRIMMER: OnceLock<Thread> = OnceLock::new();

/// The system allocator, counting large frees for the trimming thread.
/// The binary installs it (`#[global_allocator]` in `main.rs`).
pub struct Allocator;

fn freed(size: usize) {
    if size < LARGE {
        return;
    }
    let before = FREED.fetch_add(size, Ordering::Relaxed);
    if before < WAKE_AFTER
        && before + size >= WAKE_AFTER
        && let Some(t) = TRIMMER.get()
    {
        // A futex wake: no allocation, safe inside the allocator.
        t.unpark();
    }
}

// SAFETY: every call is passed to `System` unchanged; counting touches only
// an atomic and, rarely, wakes a thread.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        freed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A large block grown or shrunk may leave its old place free.
        freed(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts the thread that trims after bursts; it sleeps until one ends.
pub(crate) fn start_trimmer() -> std::io::Result<()> {
    let handle = std::thread::Builder::new()
        .name("aster-trim".into())
        .spawn(|| {
            loop {
                if FREED.load(Ordering::Relaxed) < WAKE_AFTER {
                    std::thread::park();
                    continue;
                }
                wait_for_quiet();
                FREED.store(0, Ordering::Relaxed);
                trim();
            }
        })?;
    let _ = TRIMMER.set(handle.thread().clone());
    // Frees counted before the handle was published woke nobody.
    handle.thread().unpark();
    Ok(())
}

/// Returns once less than `WAKE_AFTER` was freed in `QUIET`.
fn wait_for_quiet() {
    loop {
        let before = FREED.load(Ordering::Relaxed);
        std::thread::sleep(QUIET);
        if FREED.load(Ordering::Relaxed).saturating_sub(before) < WAKE_AFTER {
            return;
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the arenas to the
    // system; it takes each arena's lock as malloc does.
    unsafe {
        libc::malloc_trim(0);
    }
}
