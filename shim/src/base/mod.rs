//! Tier 1, base: what every tier above uses, and nothing of theirs.
//!
//! Owns: the process-wide event counters (`counters`), allocation-free
//! diagnostics (`log`), the option table (`config`), typed access to
//! jemalloc's `mallctl` (`ctl`), the NORECLAIM size classes every
//! per-thread list is sized by (`sizeclass`), all per-thread state
//! (`tls`), and the maintenance thread's mailbox (`mailbox`: how any tier
//! asks the daemon for something without calling up to it).
//!
//! May call: `os` only. Inside, a file may use only the files before it
//! in this order (scripts/layers.py): counters, ctl, log, sizeclass,
//! config, tls, mailbox.

pub(crate) mod config;
pub(crate) mod counters;
pub(crate) mod ctl;
pub(crate) mod log;
pub(crate) mod mailbox;
pub(crate) mod sizeclass;
pub(crate) mod tls;
