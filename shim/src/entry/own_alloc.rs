//! The allocator for memscope's own Rust allocations (the maintenance
//! thread's channel, its thread handle): jemalloc through its `_rjem_`
//! names, never the exported `malloc`; and, when jemalloc has nothing
//! left, the NOFAIL reserve.
//!
//! Why the fallback: Rust aborts the process when an allocation fails, and
//! the moments memscope itself allocates (starting the maintenance thread
//! at a process's first NOFAIL scope) can be the moments memory ran out:
//! a process that exhausted its address space before its first NOFAIL
//! scope was aborted there ("memory allocation of 270336 bytes failed")
//! instead of being served from the reserve. A reclaimer's allocations may
//! use the reserve (contract); memscope's own may too.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use tikv_jemalloc_sys as jem;

use crate::pool;

pub struct OwnAlloc;

/// `mallocx` flags for a block of `size` bytes aligned to `align` (none
/// when plain malloc's alignment already serves it), as tikv-jemallocator
/// computes them. The size counts too: a class of 8 B or less is only
/// 8-aligned, and the sized free must name the class the block is in.
fn align_flags(align: usize, size: usize) -> i32 {
    if align <= crate::entry::posix::MIN_ALIGN && align <= size {
        0
    } else {
        jem::MALLOCX_ALIGN(align)
    }
}

/// Retries a failed allocation in the NOFAIL reserve, if there is one.
#[cold]
unsafe fn from_reserve(size: usize, flags: i32) -> *mut u8 {
    let reserve = pool::reserve_flags();
    if reserve == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: a valid size (non-zero: Rust never asks for 0 here) and
    // flags naming a live arena with no tcache.
    unsafe { jem::mallocx(size, flags | reserve).cast() }
}

// SAFETY: every block comes from jemalloc (an ordinary arena or the
// reserve arena), aligned as asked, and goes back through `sdallocx`,
// which finds its arena from the pointer.
unsafe impl GlobalAlloc for OwnAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let flags = align_flags(layout.align(), layout.size());
        // SAFETY: Rust's allocator contract: size > 0.
        let p: *mut u8 = unsafe { jem::mallocx(layout.size(), flags).cast() };
        if p.is_null() {
            // SAFETY: as above.
            return unsafe { from_reserve(layout.size(), flags) };
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let flags = align_flags(layout.align(), layout.size()) | jem::MALLOCX_ZERO;
        // SAFETY: as `alloc`.
        let p: *mut u8 = unsafe { jem::mallocx(layout.size(), flags).cast() };
        if p.is_null() {
            // SAFETY: as above.
            return unsafe { from_reserve(layout.size(), flags) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe {
            jem::sdallocx(
                ptr.cast::<c_void>(),
                layout.size(),
                align_flags(layout.align(), layout.size()),
            )
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The new layout's flags (new_size, the same alignment): the block
        // is freed with that layout later, and from the old one a 16-aligned
        // block shrunk to 8 B or less came back 8-aligned, then was freed
        // into the 16 B class (misaligned, overlapping blocks after it).
        let flags = align_flags(layout.align(), new_size);
        // SAFETY: `ptr` is live with `layout`; new_size > 0.
        let q: *mut u8 = unsafe { jem::rallocx(ptr.cast(), new_size, flags).cast() };
        if !q.is_null() {
            return q;
        }
        // SAFETY: as `alloc`; the old block stays valid until copied.
        unsafe {
            let q = from_reserve(new_size, flags);
            if !q.is_null() {
                core::ptr::copy_nonoverlapping(ptr, q, layout.size().min(new_size));
                // The old block goes back with its own (old) layout's flags.
                jem::sdallocx(
                    ptr.cast(),
                    layout.size(),
                    align_flags(layout.align(), layout.size()),
                );
            }
            q
        }
    }
}
