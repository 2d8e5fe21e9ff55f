//! Tier 8, the entry points: everything a program calls.
//!
//! Owns: the router that sends a call whose thread has a scope (or is
//! new) to the source its scope asks for (`route`), C semantics exactly
//! as glibc documents them (`posix`), glibc's malloc extras (`glibc`),
//! changes of user id (`ids`), the `memscope_*` C API (`api`), the
//! allocator for memscope's own Rust allocations (`own_alloc`) and the
//! exported C symbols (`exports`, `export_c_abi!`).
//!
//! May call: every tier. Inside, a file may use only the files before it
//! in this order (scripts/layers.py): route, posix, glibc, ids, api,
//! own_alloc, exports. The fast path (`exports`, `posix`): the thread's
//! gate (a countdown that scopes and new threads bias negative), then
//! jemalloc; everything else goes through `route` once (on x86_64 the
//! assembly `malloc` and `free` enter it through `posix::malloc_slow_c`,
//! `free_slow_c` and `free_pool_block_c`).

#[doc(hidden)]
pub mod api;
#[doc(hidden)]
pub mod exports;
#[doc(hidden)]
pub mod glibc;
pub(crate) mod ids;
#[doc(hidden)]
pub mod own_alloc;
pub(crate) mod posix;
pub(crate) mod route;
