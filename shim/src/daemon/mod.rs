//! Tier 7, the daemon side: memscope's `kswapd`, the threads that do what
//! a scoped thread may not.
//!
//! Owns: purging through jemalloc (`purge`), the memory gauges and lock
//! counters published for operators (`gauges`, `lockstats`), the memory
//! pressure watch (`pressure`), and the maintenance thread itself
//! (`maintenance`: refills the pool and depot, frees what scoped threads
//! deferred, prints what they may not print). Tiers below talk to it only
//! through `base::mailbox`.
//!
//! May call: every tier below (`nofail`, `scope`, `front`, `pool`,
//! `stats`, `base`, `os`). Inside, a file may use only the files before
//! it in this order (scripts/layers.py): purge, gauges, lockstats,
//! pressure, maintenance.

pub(crate) mod gauges;
pub(crate) mod lockstats;
pub(crate) mod maintenance;
pub(crate) mod pressure;
pub(crate) mod purge;
