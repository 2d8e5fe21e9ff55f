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

// The tiers, lowest first: os, base, stats, pool, front, scope, nofail,
// daemon, entry. Each may use only the tiers before it, and inside a
// folder a file only the files before it in its folder's order (each
// mod.rs names it). scripts/layers.py holds and checks both orders;
// docs/DESIGN.md draws them. (rustfmt sorts the declarations below.)
pub(crate) mod base;
pub(crate) mod daemon;
#[doc(hidden)]
pub mod entry;
pub(crate) mod front;
pub(crate) mod nofail;
pub(crate) mod os;
pub(crate) mod pool;
pub(crate) mod scope;
pub(crate) mod stats;

// What the two products (preload/, rust-api/) use, by their old names.
#[doc(hidden)]
pub use entry::{api, exports, glibc, own_alloc};

/// How the layers below the maintenance thread start it (through
/// `mailbox::start_maintenance`) without depending on it: wired here, at
/// the crate root, the one place that sees every layer.
pub(crate) static START_MAINTENANCE: fn() = daemon::maintenance::ensure_started;
