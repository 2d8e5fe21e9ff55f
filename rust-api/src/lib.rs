//! memscope for Rust: a global allocator (jemalloc with per-thread
//! allocation context scopes), the scopes as guards, reclaimers as
//! closures, and the live stats segment that `memscope-stat` reads.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: memscope::Memscope = memscope::Memscope;
//!
//! fn main() {
//!     // Once per thread, before it matters: set the thread up for
//!     // NORECLAIM (the process's first scope also makes the pool).
//!     drop(memscope::noreclaim());
//!
//!     let lock = std::sync::Mutex::new(Vec::new());
//!     let mut held = lock.lock().unwrap();
//!     let _scope = memscope::noreclaim(); // no syscall, no lock wait, no page fault
//!     held.push(Box::new([0u8; 256])); // from pre-faulted pool memory
//! }
//! ```
//!
//! # Locks that hold NORECLAIM
//!
//! The kernel's rule is "no reclaim while a btree lock is held". Wrap the
//! lock's raw type once and every critical section follows it:
//! [`NoReclaimMutex`] and [`NoReclaimRwLock`] are `lock_api` locks over
//! any raw lock (`parking_lot::RawMutex`, `parking_lot::RawRwLock`, ...)
//! that hold NORECLAIM from the moment the lock is taken until it is
//! released (waiting for it stays outside).
//!
//! ```
//! type Mutex<T> = memscope::NoReclaimMutex<parking_lot::RawMutex, T>;
//! let index = Mutex::new(Vec::<Box<[u8]>>::new());
//! index.lock().push(vec![0u8; 64].into_boxed_slice());
//! ```
//!
//! # What is linked
//!
//! The whole allocator (`memscope-core`: jemalloc through
//! `tikv-jemalloc-sys`, the NORECLAIM pool, the NOFAIL reserve, the stats
//! segment) is compiled into the program: no `LD_PRELOAD`, no shared
//! library to install. [`Memscope`] serves Rust's allocations; C code in
//! the program keeps the system `malloc` (as with `tikv-jemallocator`).
//! Options are the library's `MEMSCOPE_*` environment variables; stats are
//! on by default and read with `memscope-stat show PID`.
//!
//! # With `LD_PRELOAD=libmemscope.so` as well
//!
//! One allocator only: at its first call this crate finds the loaded
//! library and forwards every allocation, scope and reclaimer to it (one
//! line on stderr says so; `MEMSCOPE_LOG=off` silences it); the linked
//! copy stays idle. C and Rust allocations then share one jemalloc, one
//! set of scopes per thread and one stats segment. The same holds when
//! the program links a C library that itself links libmemscope.so.
//!
//! # Without `Memscope` as the global allocator
//!
//! The guards still work under `LD_PRELOAD` with Rust's default (system)
//! allocator, whose calls reach the preloaded `malloc`. With any other
//! allocator (`tikv_jemallocator`, `mimalloc`) the scopes would do
//! nothing: the first NORECLAIM or NOFAIL scope checks that a probe
//! allocation reaches memscope, and if not prints one line and counts a
//! `scopes_bypassed` event in the stats.
//!
//! # Name
//!
//! This crate is `memscope`. The crate `memscope-rs` on crates.io is an
//! unrelated project (this crate's 0.1.0 was called `memscope-rs` inside
//! its repository, never published).

#![warn(missing_docs)]

mod alloc;
mod backend;
mod locks;
mod reclaim;
mod scope;

pub use alloc::Memscope;
pub use locks::{NoReclaimMutex, NoReclaimRawMutex, NoReclaimRawRwLock, NoReclaimRwLock};
pub use reclaim::{Needs, Reclaimer};
pub use scope::{current, with, Flags, Scope};
pub use scope::{nofail, nofs, noio, noreclaim, nowarn};

/// True if a loaded libmemscope.so serves this process (preloaded, or
/// linked by a C library) rather than the copy linked into the program.
///
/// ```
/// // In a test binary, which is not preloaded:
/// # if std::env::var_os("LD_PRELOAD").is_none() {
/// assert!(!memscope::is_loaded());
/// # }
/// ```
pub fn is_loaded() -> bool {
    backend::is_loaded()
}

/// memscope's version, `MAJOR << 16 | MINOR << 8 | PATCH`, of the
/// allocator in use (the loaded library's, if one is).
///
/// ```
/// let v = memscope::version();
/// assert_eq!(v >> 16, env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap());
/// ```
pub fn version() -> u32 {
    backend::version()
}

/// Makes sure `count` blocks of `size` bytes can be served inside
/// NORECLAIM on this thread without waiting for memscope's maintenance
/// thread: stocks them now (committing pool memory if needed), keeps at
/// least that many ready from then on, and sets the thread up for
/// NORECLAIM. What a daemon calls at start-up, outside its locks, for the
/// shapes it allocates under them. It makes system calls and takes locks:
/// call it outside a NORECLAIM scope.
///
/// Errors: `InvalidInput` (size 0, larger than the pool serves (4 MiB),
/// or called inside NORECLAIM), `OutOfMemory` (the pool cannot hold
/// them), `Unsupported` (a loaded libmemscope.so too old to have it).
///
/// ```
/// // Before the first request is served under the store lock:
/// memscope::prepare(256, 1000).expect("pool for the index nodes");
/// let _scope = memscope::noreclaim();
/// let node = Box::new([0u8; 256]); // served from the stock, no syscall
/// # drop(node);
/// ```
pub fn prepare(size: usize, count: usize) -> std::io::Result<()> {
    if backend::prepare(size, count) == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Publishes the calling thread's exact counts to the stats segment now
/// (they are otherwise published as the thread goes on, and at its exit).
///
/// ```
/// let v = vec![0u8; 100];
/// memscope::flush();
/// # drop(v);
/// ```
pub fn flush() {
    backend::flush()
}
