//! glibc's malloc extras answered from jemalloc, so that programs calling
//! them see this allocator's state rather than glibc's empty arenas.
//!
//! `mallinfo2` field mapping (jemalloc statistics, refreshed per call):
//! `arena` = `stats.mapped`, `uordblks` = `stats.allocated`, `fordblks` =
//! `stats.active - stats.allocated` (free bytes in pages in use), `keepcost`
//! = `stats.resident - stats.active - stats.metadata` (dirty pages a trim
//! would return), `hblkhd` = `stats.retained` (mapped but returned),
//! the rest 0.

use crate::base::counters::{count, Event};
use crate::base::{ctl, mailbox};
use crate::daemon::purge;
use crate::entry::route;
use crate::scope;
use core::ffi::c_int;

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

fn stat(name: &core::ffi::CStr) -> usize {
    ctl::read::<usize>(name).unwrap_or(0)
}

pub fn mallinfo2() -> Mallinfo2 {
    // A failed refresh leaves the previous snapshot: numbers a little old.
    let _ = ctl::refresh_stats();
    let allocated = stat(c"stats.allocated");
    let active = stat(c"stats.active");
    let resident = stat(c"stats.resident");
    let metadata = stat(c"stats.metadata");
    Mallinfo2 {
        arena: stat(c"stats.mapped"),
        hblkhd: stat(c"stats.retained"),
        uordblks: allocated,
        fordblks: active.saturating_sub(allocated),
        keepcost: resident.saturating_sub(active).saturating_sub(metadata),
        ..Mallinfo2::default()
    }
}

/// The old `mallinfo`: `int` fields, saturated at `INT_MAX` rather than
/// wrapped as glibc does.
pub fn mallinfo() -> Mallinfo {
    let m = mallinfo2();
    let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
    Mallinfo {
        arena: c(m.arena),
        ordblks: c(m.ordblks),
        smblks: c(m.smblks),
        hblks: c(m.hblks),
        hblkhd: c(m.hblkhd),
        usmblks: c(m.usmblks),
        fsmblks: c(m.fsmblks),
        uordblks: c(m.uordblks),
        fordblks: c(m.fordblks),
        keepcost: c(m.keepcost),
    }
}

/// Purges every arena's unused dirty pages. Returns 1 if resident memory
/// went down, as glibc returns 1 when memory went back to the system.
/// Inside NORECLAIM the purge is handed to the maintenance thread and 0 is
/// returned at once: purging is exactly what the scope forbids.
pub fn malloc_trim(_pad: usize) -> c_int {
    if route::scope_flags() & scope::NORECLAIM != 0 {
        count(Event::TrimDeferred);
        mailbox::request_purge();
        return 0;
    }
    // Without fresh statistics the comparison says "no": 0, as glibc when
    // nothing went back.
    if ctl::refresh_stats().is_err() {
        purge::purge_all();
        return 0;
    }
    let before = stat(c"stats.resident");
    purge::purge_all();
    if ctl::refresh_stats().is_err() {
        return 0;
    }
    let after = stat(c"stats.resident");
    c_int::from(after < before)
}

/// glibc's `M_MXFAST`, the only parameter whose range glibc checks.
const M_MXFAST: c_int = 1;

/// Accepts and ignores every parameter (jemalloc has its own tuning, via
/// `MALLOC_CONF`), returning what glibc returns: 1, or 0 for an
/// out-of-range `M_MXFAST`.
pub fn mallopt(param: c_int, value: c_int) -> c_int {
    let max_fast = (80 * core::mem::size_of::<usize>() / 4) as c_int;
    c_int::from(param != M_MXFAST || (0..=max_fast).contains(&value))
}
