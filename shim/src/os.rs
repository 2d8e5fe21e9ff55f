//! Facts about the machine the allocator asks the OS for, in one place.
//! (The OS calls themselves are still made where they are needed; see
//! docs/DESIGN.md, "Layers", for the plan to gather them here.)

/// The page size (`sysconf`; 4096 if it cannot say).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}
