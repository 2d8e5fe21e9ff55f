//! Small pool blocks kept per thread in front of jemalloc's explicit
//! cache, for the NORECLAIM fast path.
//!
//! An allocation in scope through jemalloc (`mallocx` with an explicit
//! arena and tcache, then `dallocx`) costs about 11 ns a pair against 4-7
//! outside (contract section 9). Small requests in scope are served from
//! these stacks instead: one stack per 16-byte size class up to 256 bytes,
//! refilled from the pool through the thread's explicit cache, and fed by
//! frees of pool blocks in scope. A block in class `c` has a usable size of
//! at least `16 * (c + 1)`, so it serves any request up to that. A freed
//! block's usable size comes from the pool's page-class table
//! (`pool::small_usable`), which every hand-out records.
//!
//! The stacks live in the thread's `.tbss` block (`tls::ThreadBss`): zero
//! at thread start, copied by nobody, touched only by threads that use
//! NORECLAIM. Rule: plain loads and stores; no syscall, no lock.

use core::ffi::c_void;

use tikv_jemalloc_sys as jem;

pub const GRAIN: usize = crate::pool::SMALL_GRAIN;
pub const CLASSES: usize = crate::pool::SMALL_CLASSES;
/// The largest request served here.
pub const MAX_SIZE: usize = crate::pool::SMALL_MAX;
const DEPTH: usize = crate::tls::MAGAZINE_DEPTH;
/// Blocks fetched from jemalloc when a stack runs empty.
const REFILL: usize = DEPTH / 2;

use crate::tls::Magazines;

/// The calling thread's magazines (in its `.tbss` block, `tls::bss`).
#[inline(always)]
fn magazines() -> &'static Magazines {
    &crate::tls::bss().magazines
}

#[inline(always)]
fn class_of(size: usize) -> usize {
    size.max(1).div_ceil(GRAIN) - 1
}

/// A block of at least `size` (<= MAX_SIZE) bytes from the pool, or NULL
/// when the pool is empty. `pool_flags` are the thread's pool `mallocx`
/// flags (non-zero).
///
/// # Safety
/// Call only on a NORECLAIM thread with its pool cache set up.
#[inline(always)]
pub unsafe fn alloc(size: usize, pool_flags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let p = take(size);
        if !p.is_null() {
            return p;
        }
        refill(magazines(), class_of(size), pool_flags)
    }
}

/// A kept block of at least `size` (<= MAX_SIZE) bytes, or NULL when its
/// stack is empty (no refill: the caller takes the general path).
#[inline(always)]
pub fn take(size: usize) -> *mut c_void {
    let c = class_of(size);
    let m = magazines();
    let n = m.len[c].get() as usize;
    if n == 0 {
        return core::ptr::null_mut();
    }
    m.len[c].set(n as u32 - 1);
    m.slots[c][n - 1].get() as *mut c_void
}

#[cold]
#[inline(never)]
unsafe fn refill(m: &Magazines, c: usize, pool_flags: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let size = (c + 1) * GRAIN;
        let first = jem::mallocx(size, pool_flags);
        if first.is_null() {
            return first;
        }
        let usable = jem::nallocx(size, pool_flags);
        crate::pool::note_block(first, usable);
        let mut n = 0;
        while n < REFILL {
            let p = jem::mallocx(size, pool_flags);
            if p.is_null() {
                break;
            }
            crate::pool::note_block(p, usable);
            m.slots[c][n].set(p as usize);
            n += 1;
        }
        m.len[c].set(n as u32);
        first
    }
}

/// Keeps a pool block whose usable size is `usable`; false if it does not
/// fit here (too large, or the stack is full): free it through jemalloc.
///
/// # Safety
/// `p` is a live pool block being freed on a NORECLAIM thread.
#[inline(always)]
pub unsafe fn free(p: *mut c_void, usable: usize) -> bool {
    if !(GRAIN..=MAX_SIZE).contains(&usable) {
        return false;
    }
    let c = usable / GRAIN - 1;
    let m = magazines();
    let n = m.len[c].get() as usize;
    if n == DEPTH {
        return false;
    }
    m.slots[c][n].set(p as usize);
    m.len[c].set(n as u32 + 1);
    true
}

/// Touches every page of this thread's magazines (they live in lazily
/// faulted TLS), so the first use in a scope takes no page fault.
pub fn touch() {
    let m = magazines();
    // SAFETY: this thread's own block, mapped writable.
    unsafe { crate::os::prefault_write((m as *const Magazines).cast(), core::mem::size_of::<Magazines>()) };
}

/// Gives every kept block back to jemalloc through `free_flags` (thread
/// exit, before the thread's pool cache is destroyed).
pub fn drain(free_flags: i32) {
    let m = magazines();
    for c in 0..CLASSES {
        let n = m.len[c].get() as usize;
        for slot in &m.slots[c][..n] {
            // SAFETY: each kept pointer is a live pool block owned here.
            unsafe { jem::dallocx(slot.get() as *mut c_void, free_flags) };
        }
        m.len[c].set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_their_sizes() {
        assert_eq!(class_of(0), 0);
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(MAX_SIZE), CLASSES - 1);
        for size in 1..=MAX_SIZE {
            assert!((class_of(size) + 1) * GRAIN >= size);
        }
    }
}
