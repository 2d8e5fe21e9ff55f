//! Tier 8, the entry points: everything a program calls.
//!
//! Owns: the router that sends a call whose thread has a scope (or is
//! new) to the source its scope asks for (`route`), C semantics exactly
//! as glibc documents them (`posix`), glibc's malloc extras (`glibc`),
//! changes of user id (`ids`), the `memscope_*` C API (`api`), the
//! allocator for memscope's own Rust allocations (`own_alloc`) and the
//! exported C symbols (`exports`, `export_c_abi!`).
//!
//! May call: every tier; inside, files in the order listed here (`route`
//! first, `exports` last). The fast path (`exports`, `posix`): the
//! thread's gate (a countdown that scopes and new threads bias negative),
//! then jemalloc; everything else goes through `route` once.

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
