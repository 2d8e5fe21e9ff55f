//! `Memscope`, the `#[global_allocator]`.

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_int;

use crate::backend;

/// memscope as the Rust global allocator:
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: memscope::Memscope = memscope::Memscope;
///
/// fn main() {
///     let _scope = memscope::noreclaim(); // served from pre-faulted memory
///     let v = vec![0u8; 4096];
///     # drop(v);
/// }
/// ```
///
/// Every Rust allocation then goes through memscope's jemalloc, counted in
/// its stats segment and served as the calling thread's scopes ask. The
/// program's C code (libraries it links) keeps the system `malloc`, as with
/// `tikv-jemallocator`; preload libmemscope.so as well to bring it in, and
/// this allocator forwards to the preloaded library (see the crate docs).
pub struct Memscope;

/// jemalloc's `MALLOCX_ZERO`.
const MALLOCX_ZERO: c_int = 0x40;
/// The alignment plain `malloc` gives on this target (jemalloc's quantum).
const MIN_ALIGN: usize = 16;

/// `mallocx` flags for a block of `size` bytes aligned to `align`: none
/// when the size class's own alignment serves it, else `MALLOCX_ALIGN`
/// (jemalloc's encoding: log2 of it). As tikv-jemallocator's
/// `layout_to_flags`. The size matters, not only the alignment: a class
/// of 8 B or less is only 8-aligned, so a 16-aligned block that small
/// needs the flag, and the sized free must name the same class as the
/// allocation did (see `realloc`).
#[inline(always)]
fn flags(align: usize, size: usize) -> c_int {
    if align <= MIN_ALIGN && align <= size {
        0
    } else {
        align.trailing_zeros() as c_int
    }
}

// SAFETY: every block comes from jemalloc (`mallocx`, `rallocx`) with the
// flags of its current layout's size and alignment, and goes back with
// `sdallocx` and that layout's size and flags, to the same backend (it is
// chosen once per process).
unsafe impl GlobalAlloc for Memscope {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: Rust's allocator contract: size > 0.
        unsafe { backend::mallocx(layout.size(), flags(layout.align(), layout.size())).cast() }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { backend::mallocx(layout.size(), flags(layout.align(), layout.size()) | MALLOCX_ZERO).cast() }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { backend::sdallocx(ptr.cast(), layout.size(), flags(layout.align(), layout.size())) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The flags of the new layout (new_size, the same alignment), not
        // the old one's: the caller frees the block with the new layout,
        // and `dealloc` computes its flags from that. From the old layout,
        // a 16-aligned block of 16..=64 B shrunk to 8 B or less was sent
        // without the alignment flag, came back 8-aligned in the 8 B class,
        // and the sized free filed it under the 16 B class, which then
        // handed out misaligned blocks overlapping their neighbours.
        // SAFETY: `ptr` was allocated by this allocator with `layout`;
        // new_size > 0 and the alignment stays the layout's.
        unsafe { backend::rallocx(ptr.cast(), new_size, flags(layout.align(), new_size)).cast() }
    }
}
