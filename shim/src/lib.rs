//! memscope: an `LD_PRELOAD` malloc built on jemalloc, with per-thread
//! allocation context scopes (NORECLAIM, NOFAIL, NOWARN, NOFS, NOIO) in
//! the manner of the kernel's `memalloc_*_save()`. See docs/DESIGN.md.
//!
//! Rule for the whole crate: nothing reachable from an exported function
//! panics, unwinds, or allocates through the exported `malloc`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The unit-test build keeps the system malloc (`exports` is not exported
// there: `cfg_attr(not(test), no_mangle)`), so most of the crate is
// unreachable in it; dead code is found in the real build.
#![cfg_attr(test, allow(dead_code))]

pub(crate) mod api;
pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod ctl;
pub(crate) mod depot;
pub(crate) mod exports;
pub(crate) mod glibc;
pub(crate) mod ids;
pub(crate) mod init;
pub(crate) mod lockstats;
pub(crate) mod log;
pub(crate) mod magazine;
pub(crate) mod mailbox;
pub(crate) mod maintenance;
pub(crate) mod nofail;
pub(crate) mod os;
pub(crate) mod own_alloc;
pub(crate) mod pool;
pub(crate) mod posix;
pub(crate) mod purge;
pub(crate) mod reclaim;
pub(crate) mod route;
pub(crate) mod scope;
pub(crate) mod sizeclass;
pub(crate) mod stats;
pub(crate) mod tls;

/// The shim's own Rust allocations go to jemalloc directly (the `_rjem_`
/// names), never through the exported `malloc`, with the NOFAIL reserve
/// behind it (`own_alloc`).
#[global_allocator]
static ALLOC: own_alloc::OwnAlloc = own_alloc::OwnAlloc;

/// How the layers below the maintenance thread start it (through
/// `mailbox::start_maintenance`) without depending on it: wired here, at
/// the crate root, the one place that sees every layer.
pub(crate) static START_MAINTENANCE: fn() = maintenance::ensure_started;
