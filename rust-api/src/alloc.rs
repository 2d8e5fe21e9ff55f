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

/// `mallocx` flags for `layout`: none when the size class's own alignment
/// serves it, else `MALLOCX_ALIGN` (jemalloc's encoding: log2 of it).
#[inline(always)]
fn flags(layout: &Layout) -> c_int {
    if layout.align() <= MIN_ALIGN && layout.align() <= layout.size() {
        0
    } else {
        layout.align().trailing_zeros() as c_int
    }
}

// SAFETY: every block comes from jemalloc (`mallocx`, `rallocx`) with the
// layout's size and alignment, and goes back with `sdallocx` and the same
// size and flags, to the same backend (it is chosen once per process).
unsafe impl GlobalAlloc for Memscope {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: Rust's allocator contract: size > 0.
        unsafe { backend::mallocx(layout.size(), flags(&layout)).cast() }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { backend::mallocx(layout.size(), flags(&layout) | MALLOCX_ZERO).cast() }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout`.
        unsafe { backend::sdallocx(ptr.cast(), layout.size(), flags(&layout)) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator with `layout`;
        // new_size > 0 and the alignment stays the layout's.
        unsafe { backend::rallocx(ptr.cast(), new_size, flags(&layout)).cast() }
    }
}
