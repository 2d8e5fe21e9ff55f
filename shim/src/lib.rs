//! memscope: an `LD_PRELOAD` malloc built on jemalloc, with per-thread
//! allocation context scopes (NORECLAIM, NOFAIL, NOWARN, NOFS, NOIO) in
//! the manner of the kernel's `memalloc_*_save()`. See docs/DESIGN.md.
//!
//! This crate is the allocator itself. It is a product in two forms: the
//! preloaded library (`preload/`, libmemscope.so, which gives the entry
//! points their C names with `export_c_abi!`) and the Rust crate
//! `memscope` (`memscope::Memscope`, a `#[global_allocator]` linked into
//! a Rust program). Only `exports`, `api`, `glibc` and `own_alloc` are
//! meant for those two crates; nothing here is a stable Rust API.
//!
//! Rule for the whole crate: nothing reachable from an entry point
//! panics, unwinds, or allocates through the exported `malloc`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
// The entry points are public; whatever they do not reach is dead code.
#![allow(clippy::missing_safety_doc)]

#[doc(hidden)]
pub mod api;
pub(crate) mod carve;
pub(crate) mod cgroup;
pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod ctl;
pub(crate) mod depot;
#[doc(hidden)]
pub mod exports;
pub(crate) mod gauges;
#[doc(hidden)]
pub mod glibc;
pub(crate) mod ids;
pub(crate) mod init;
pub(crate) mod lockstats;
pub(crate) mod log;
pub(crate) mod magazine;
pub(crate) mod mailbox;
pub(crate) mod maintenance;
pub(crate) mod nofail;
pub(crate) mod os;
#[doc(hidden)]
pub mod own_alloc;
pub(crate) mod pool;
pub(crate) mod posix;
pub(crate) mod pressure;
pub(crate) mod purge;
pub(crate) mod reclaim;
pub(crate) mod route;
pub(crate) mod scope;
pub(crate) mod sizeclass;
pub(crate) mod stats;
pub(crate) mod tls;

/// How the layers below the maintenance thread start it (through
/// `mailbox::start_maintenance`) without depending on it: wired here, at
/// the crate root, the one place that sees every layer.
pub(crate) static START_MAINTENANCE: fn() = maintenance::ensure_started;
