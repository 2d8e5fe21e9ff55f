//! Tier 4, the NORECLAIM front end: where a scoped thread's allocation is
//! served without a syscall, a lock or a first touch.
//!
//! Owns: the thread's own free lists per size class (`magazine`), the
//! lock-free depot of ready pool blocks they refill from and spill to
//! (`depot`), and a scoped thread's carving of new blocks from committed
//! pool memory when neither has its class (`carve`). A request enters at
//! `magazine` and goes down once: lists, then depot, then carve.
//!
//! May call: `pool`, `stats`, `base`, `os`. Inside, a file may use only
//! the files before it in this order (scripts/layers.py): depot, carve,
//! magazine.

pub(crate) mod carve;
pub(crate) mod depot;
pub(crate) mod magazine;
