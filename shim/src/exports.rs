//! Every exported symbol, each a call down into `posix`, `route`, `glibc`,
//! `api`, `ids` or jemalloc itself (the jemalloc-API entry points keep their
//! fast path here: the gate, then a tail call).
//!
//! `#[cfg_attr(not(test), no_mangle)]`: the crate's own unit-test binary
//! keeps the system malloc. Nothing here may panic or unwind.

#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_void};

use tikv_jemalloc_sys as jem;

use crate::glibc::{Mallinfo, Mallinfo2};
use crate::{glibc, posix, route, tls};
use memscope_abi::{OP_ALLOC, OP_FREE, OP_REALLOC};

type WriteCb = Option<unsafe extern "C" fn(*mut c_void, *const c_char)>;

// ---------------------------------------------- glibc's replacing-malloc set

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::malloc(size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free(p) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::calloc(n, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::realloc(p, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::reallocarray(p, n, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::posix_memalign(memptr, align, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::aligned_alloc(align, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::memalign(align, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::valloc(size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::pvalloc(size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::malloc_usable_size(p) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free_sized(p, size) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free_aligned_sized(p, align, size) }
}

// ------------------------------------------------------------ glibc extras

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    glibc::malloc_trim(pad)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    glibc::mallinfo2()
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallinfo() -> Mallinfo {
    glibc::mallinfo()
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    glibc::mallopt(param, value)
}

/// glibc prints arena statistics on stderr; jemalloc's report goes there.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn malloc_stats() {
    // SAFETY: NULL callback and options mean "stderr, everything".
    unsafe { jem::malloc_stats_print(None, core::ptr::null_mut(), core::ptr::null()) }
}

// ---------------------------------------------------- jemalloc's extended API

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mallocx(size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_ALLOC>() {
            return jem::mallocx(size, flags);
        }
        mallocx_slow(size, flags)
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn rallocx(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_REALLOC>() {
            return jem::rallocx(p, size, flags);
        }
        rallocx_slow(p, size, flags)
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn xallocx(p: *mut c_void, size: usize, extra: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_REALLOC>() {
            return jem::xallocx(p, size, extra, flags);
        }
        xallocx_slow(p, size, extra, flags)
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sallocx(p: *const c_void, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::sallocx(p, flags) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dallocx(p: *mut c_void, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_FREE>() {
            return jem::dallocx(p, flags);
        }
        dallocx_slow(p, flags)
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sdallocx(p: *mut c_void, size: usize, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_FREE>() {
            return route::sized_free_unscoped(p, size, flags);
        }
        sdallocx_slow(p, size, flags)
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn nallocx(size: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::nallocx(size, flags) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mallctl(
    name: *const c_char,
    oldp: *mut c_void,
    oldlenp: *mut usize,
    newp: *mut c_void,
    newlen: usize,
) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::mallctl(name, oldp, oldlenp, newp, newlen) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mallctlnametomib(
    name: *const c_char,
    mibp: *mut usize,
    miblenp: *mut usize,
) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::mallctlnametomib(name, mibp, miblenp) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mallctlbymib(
    mib: *const usize,
    miblen: usize,
    oldp: *mut c_void,
    oldlenp: *mut usize,
    newp: *mut c_void,
    newlen: usize,
) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::mallctlbymib(mib, miblen, oldp, oldlenp, newp, newlen) }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_stats_print(write_cb: WriteCb, cbopaque: *mut c_void, opts: *const c_char) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::malloc_stats_print(write_cb, cbopaque, opts) }
}

// ------------------------------------------- slow sides of the gated calls

#[cold]
#[inline(never)]
unsafe fn mallocx_slow(size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        posix::off_fast(
            OP_ALLOC,
            || jem::mallocx(size, flags),
            || route::mallocx(size, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn rallocx_slow(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        posix::off_fast(
            OP_REALLOC,
            || jem::rallocx(p, size, flags),
            || route::rallocx(p, size, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn xallocx_slow(p: *mut c_void, size: usize, extra: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        posix::off_fast(
            OP_REALLOC,
            || jem::xallocx(p, size, extra, flags),
            || route::xallocx(p, size, extra, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn dallocx_slow(p: *mut c_void, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        posix::off_fast(
            OP_FREE,
            || jem::dallocx(p, flags),
            || route::sdallocx(p, 0, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn sdallocx_slow(p: *mut c_void, size: usize, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        posix::off_fast(
            OP_FREE,
            || route::sized_free_unscoped(p, size, flags),
            || route::sdallocx(p, size, flags),
        )
    }
}

// ------------------------------------------------ changes of user id
// Not allocator symbols: exported so that the stats segment can follow a
// daemon that drops privileges (`ids`), each a call into libc's own.

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn setuid(uid: libc::uid_t) -> c_int {
    crate::ids::setuid(uid)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn seteuid(euid: libc::uid_t) -> c_int {
    crate::ids::seteuid(euid)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn setreuid(ruid: libc::uid_t, euid: libc::uid_t) -> c_int {
    crate::ids::setreuid(ruid, euid)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn setresuid(ruid: libc::uid_t, euid: libc::uid_t, suid: libc::uid_t) -> c_int {
    crate::ids::setresuid(ruid, euid, suid)
}
