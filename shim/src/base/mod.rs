//! Tier 1, base: what every tier above uses, and nothing of theirs.
//!
//! Owns: the process-wide event counters (`counters`), allocation-free
//! diagnostics (`log`), the option table (`config`), typed access to
//! jemalloc's `mallctl` (`ctl`), the NORECLAIM size classes every
//! per-thread list is sized by (`sizeclass`), all per-thread state
//! (`tls`), and the maintenance thread's mailbox (`mailbox`: how any tier
//! asks the daemon for something without calling up to it).
//!
//! May call: `os` only; inside the folder, a file may use the files listed
//! before it here.

pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod ctl;
pub(crate) mod log;
pub(crate) mod mailbox;
pub(crate) mod sizeclass;
pub(crate) mod tls;
