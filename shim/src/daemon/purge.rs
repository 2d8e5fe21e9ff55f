//! Purging every arena (`malloc_trim`, the maintenance thread, the soft
//! limit): one jemalloc call, timed as a slow event. Never on a NORECLAIM
//! thread (it returns memory to the OS).

use crate::base::ctl;

/// Purges all arenas now, on the calling thread.
pub fn purge_all() {
    let t = crate::stats::event_start();
    // A purge that fails leaves dirty pages for decay to return later;
    // callers see it in resident memory (`malloc_trim` returns 0).
    if let Some(m) = ctl::Mib::new(c"arena.0.purge") {
        let _ = m.at(1, ctl::ARENAS_ALL).call();
    }
    crate::stats::event_done(crate::stats::Timer::Purge, t);
}
