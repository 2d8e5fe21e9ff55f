//! memscope: an `LD_PRELOAD` malloc built on jemalloc, with per-thread
//! allocation context scopes (NORECLAIM, NOFAIL, NOWARN, NOFS, NOIO) in
//! the manner of the kernel's `memalloc_*_save()`. See docs/DESIGN.md.
//!
//! Rule for the whole crate: nothing reachable from an exported function
//! panics, unwinds, or allocates through the exported `malloc`.

pub mod api;
pub mod config;
pub mod counters;
pub mod ctl;
pub mod exports;
pub mod glibc;
pub mod ids;
pub mod init;
pub mod log;
pub mod magazine;
pub mod mailbox;
pub mod maintenance;
pub mod nofail;
pub mod os;
pub mod own_alloc;
pub mod pool;
pub mod posix;
pub mod purge;
pub mod reclaim;
pub mod route;
pub mod scope;
pub mod stats;
pub mod tls;

/// The shim's own Rust allocations go to jemalloc directly (the `_rjem_`
/// names), never through the exported `malloc`, with the NOFAIL reserve
/// behind it (`own_alloc`).
#[global_allocator]
static ALLOC: own_alloc::OwnAlloc = own_alloc::OwnAlloc;

/// How the layers below the maintenance thread start it (through
/// `mailbox::start_maintenance`) without depending on it: wired here, at
/// the crate root, the one place that sees every layer.
pub(crate) static START_MAINTENANCE: fn() = maintenance::ensure_started;
