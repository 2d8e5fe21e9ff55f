//! C semantics over jemalloc, exactly as glibc documents them: errno on
//! every NULL, overflow checks, alignment rules and EINVAL, `realloc(p, 0)`.
//!
//! Hot path: `malloc`, `free`, `calloc`, `realloc` pass `tls::gate` (one
//! decrement of a TLS countdown and a sign test; scopes and new threads
//! make it fail) and go straight to jemalloc. Anything else goes to
//! `route`, which knows the scopes.

use core::ffi::{c_int, c_void};
use core::ptr::null_mut;

use tikv_jemalloc_sys as jem;

use crate::base::log::set_errno;
use crate::base::tls;
use crate::entry::route;
use crate::nofail;
use crate::os::page_size;
use memscope_abi::{OP_ALLOC, OP_FREE, OP_REALLOC};

/// glibc's `MALLOC_ALIGNMENT` on 64-bit targets: what plain malloc gives.
pub const MIN_ALIGN: usize = 16;

/// # Safety
/// As C `malloc`.
#[inline(always)]
pub unsafe fn malloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_ALLOC>() {
            return jem::malloc(size);
        }
        malloc_slow(size)
    }
}

/// `malloc_slow` with the C ABI, for the assembly `malloc` to jump to.
///
/// # Safety
/// As C `malloc`.
pub unsafe extern "C" fn malloc_slow_c(size: usize) -> *mut c_void {
    // SAFETY: the caller's contract.
    unsafe { malloc_slow(size) }
}

/// `route::free_gated` with the C ABI, for the assembly `free`.
///
/// # Safety
/// As C `free`.
pub unsafe extern "C" fn free_slow_c(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { route::free_gated(p) }
}

/// A pool block freed on the fast path, with the C ABI, for the assembly
/// `free`.
///
/// # Safety
/// `p` is a pool block, as for C `free`.
pub unsafe extern "C" fn free_pool_block_c(p: *mut c_void) {
    // SAFETY: the caller's contract.
    unsafe { route::free_pool_block_outside(p) }
}

#[cold]
#[inline(never)]
unsafe fn malloc_slow(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { route::malloc(size) }
}

/// # Safety
/// `p` is NULL or a live block from this allocator.
#[inline(always)]
pub unsafe fn free(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { route::free(p, tls::gate::<OP_FREE>()) }
}

/// # Safety
/// As C `calloc`.
#[inline(always)]
pub unsafe fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_ALLOC>() {
            return jem::calloc(n, size);
        }
        calloc_slow(n, size)
    }
}

#[cold]
#[inline(never)]
unsafe fn calloc_slow(n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        route::off_fast(
            OP_ALLOC,
            || jem::calloc(n, size),
            || match n.checked_mul(size) {
                Some(total) => route::alloc(total, jem::MALLOCX_ZERO),
                None => nofail::impossible(usize::MAX, libc::ENOMEM),
            },
        )
    }
}

/// # Safety
/// `p` is NULL or a live block from this allocator.
#[inline]
pub unsafe fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return malloc(size);
        }
        if size == 0 {
            // glibc (REALLOC_ZERO_BYTES_FREES): free and return NULL, errno
            // untouched.
            free(p);
            return null_mut();
        }
        let q = if tls::gate::<OP_REALLOC>() {
            route::realloc_unscoped(p, size, 0)
        } else {
            realloc_slow(p, size)
        };
        if q.is_null() {
            // jemalloc 5.3.0 leaves errno alone when a realloc fails.
            set_errno(libc::ENOMEM);
        }
        q
    }
}

#[cold]
#[inline(never)]
unsafe fn realloc_slow(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        route::off_fast(
            OP_REALLOC,
            || route::realloc_unscoped(p, size, 0),
            || route::realloc(p, size),
        )
    }
}

/// # Safety
/// As `realloc`.
pub unsafe fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match n.checked_mul(size) {
            Some(total) => realloc(p, total),
            None => nofail::impossible(usize::MAX, libc::ENOMEM),
        }
    }
}

/// # Safety
/// `memptr` is valid for a pointer write.
pub unsafe fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if !align.is_power_of_two() || !align.is_multiple_of(core::mem::size_of::<*mut c_void>()) {
            nofail::impossible(size, libc::EINVAL);
            return libc::EINVAL;
        }
        let p = aligned(align, size);
        if p.is_null() {
            return libc::ENOMEM;
        }
        *memptr = p;
        0
    }
}

/// C11 `aligned_alloc` as glibc 2.38 and later document it: the alignment
/// must be a power of two, else NULL with EINVAL. (Older glibc treated it
/// like `memalign`; see docs/DESIGN.md.)
///
/// # Safety
/// As C `aligned_alloc` (always safe to call; unsafe for uniformity).
pub unsafe fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if !align.is_power_of_two() {
            return nofail::impossible(size, libc::EINVAL);
        }
        aligned_or_enomem(align, size)
    }
}

/// glibc `memalign`: an alignment that is not a power of two is rounded up
/// to the next one; one above `SIZE_MAX / 2 + 1` is EINVAL.
///
/// # Safety
/// As C `memalign`.
pub unsafe fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if align > usize::MAX / 2 + 1 {
            return nofail::impossible(size, libc::EINVAL);
        }
        aligned_or_enomem(align.max(1).next_power_of_two(), size)
    }
}

/// # Safety
/// As C `valloc`.
pub unsafe fn valloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { aligned_or_enomem(page_size(), size) }
}

/// glibc `pvalloc`: page-aligned, size rounded up to whole pages (one page
/// for 0); a size whose rounding overflows is ENOMEM.
///
/// # Safety
/// As C `pvalloc`.
pub unsafe fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let page = page_size();
        match size.max(1).checked_add(page - 1) {
            Some(s) => aligned_or_enomem(page, s & !(page - 1)),
            None => nofail::impossible(size, libc::ENOMEM),
        }
    }
}

/// # Safety
/// `p` is NULL or a live block from this allocator.
pub unsafe fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            0
        } else {
            route::usable_size(p)
        }
    }
}

/// C23 `free_sized`.
///
/// # Safety
/// `p` is NULL or a live block; `size` is what was requested for it.
pub unsafe fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return;
        }
        if tls::gate::<OP_FREE>() {
            return route::sized_free_unscoped(p, size.max(1), 0);
        }
        route::off_fast(
            OP_FREE,
            || route::sized_free_unscoped(p, size.max(1), 0),
            || route::free_scoped(p),
        )
    }
}

/// C23 `free_aligned_sized`.
///
/// # Safety
/// `p` is NULL or a live block from `aligned_alloc(align, size)`.
pub unsafe fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if p.is_null() {
            return;
        }
        if align.is_power_of_two() {
            let flags = jem::MALLOCX_ALIGN(align);
            if tls::gate::<OP_FREE>() {
                return route::sized_free_unscoped(p, size.max(1), flags);
            }
            return route::off_fast(
                OP_FREE,
                || route::sized_free_unscoped(p, size.max(1), flags),
                || route::free_scoped(p),
            );
        }
        route::free_scoped(p)
    }
}

unsafe fn aligned(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if align <= MIN_ALIGN {
            // Plain malloc aligns every block of at least `align` bytes to it
            // (jemalloc's classes of 16 bytes and up are multiples of 16), but
            // its 8-byte class is only 8-aligned: ask for at least `align`.
            return malloc(size.max(align));
        }
        // mallocx(0) is undefined in jemalloc; C allows a unique pointer.
        route::alloc(size.max(1), jem::MALLOCX_ALIGN(align))
    }
}

unsafe fn aligned_or_enomem(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let p = aligned(align, size);
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        p
    }
}
