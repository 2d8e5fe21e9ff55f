//! Every C entry point, each a call down into `posix`, `route`, `glibc`,
//! `ids` or jemalloc itself (the jemalloc-API entry points keep their fast
//! path here: the gate, then a tail call), and `export_c_abi!`, which
//! gives them (and `api`'s) their C names.
//!
//! The names are given by the crate that is the product, not here: the
//! preloaded library (`preload/`, libmemscope.so) expands `export_c_abi!`;
//! a Rust program linking memscope (`memscope::Memscope`) calls these
//! functions directly and keeps the system `malloc` for its C code. Nothing
//! here may panic or unwind.

#![allow(clippy::missing_safety_doc)]

use core::ffi::{c_char, c_int, c_void};

use tikv_jemalloc_sys as jem;

use crate::base::tls;
use crate::entry::glibc::{Mallinfo, Mallinfo2};
use crate::entry::{glibc, posix, route};
use memscope_abi::{OP_ALLOC, OP_FREE, OP_REALLOC};

pub type WriteCb = Option<unsafe extern "C" fn(*mut c_void, *const c_char)>;

// ---------------------------------------------- glibc's replacing-malloc set

#[inline]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::malloc(size) }
}

#[inline]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free(p) }
}

#[inline]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::calloc(n, size) }
}

#[inline]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::realloc(p, size) }
}

#[inline]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::reallocarray(p, n, size) }
}

#[inline]
pub unsafe extern "C" fn posix_memalign(memptr: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::posix_memalign(memptr, align, size) }
}

#[inline]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::aligned_alloc(align, size) }
}

#[inline]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::memalign(align, size) }
}

#[inline]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::valloc(size) }
}

#[inline]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::pvalloc(size) }
}

#[inline]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::malloc_usable_size(p) }
}

#[inline]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free_sized(p, size) }
}

#[inline]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { posix::free_aligned_sized(p, align, size) }
}

// ------------------------------------------------------------ glibc extras

#[inline]
pub extern "C" fn malloc_trim(pad: usize) -> c_int {
    glibc::malloc_trim(pad)
}

#[inline]
pub extern "C" fn mallinfo2() -> Mallinfo2 {
    glibc::mallinfo2()
}

#[inline]
pub extern "C" fn mallinfo() -> Mallinfo {
    glibc::mallinfo()
}

#[inline]
pub extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    glibc::mallopt(param, value)
}

/// glibc prints arena statistics on stderr; jemalloc's report goes there.
#[inline]
pub extern "C" fn malloc_stats() {
    // SAFETY: NULL callback and options mean "stderr, everything".
    unsafe { jem::malloc_stats_print(None, core::ptr::null_mut(), core::ptr::null()) }
}

// ---------------------------------------------------- jemalloc's extended API

#[inline]
pub unsafe extern "C" fn mallocx(size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_ALLOC>() {
            return jem::mallocx(size, flags);
        }
        mallocx_slow(size, flags)
    }
}

#[inline]
pub unsafe extern "C" fn rallocx(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_REALLOC>() {
            return route::rallocx_unscoped(p, size, flags, 0);
        }
        rallocx_slow(p, size, flags)
    }
}

#[inline]
pub unsafe extern "C" fn xallocx(p: *mut c_void, size: usize, extra: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_REALLOC>() {
            return route::xallocx_unscoped(p, size, extra, flags);
        }
        xallocx_slow(p, size, extra, flags)
    }
}

#[inline]
pub unsafe extern "C" fn sallocx(p: *const c_void, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        match crate::pool::carved_class(p) {
            Some(c) => crate::base::sizeclass::size_of(c),
            None => jem::sallocx(p, flags),
        }
    }
}

#[inline]
pub unsafe extern "C" fn dallocx(p: *mut c_void, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_FREE>() {
            return route::free_unscoped(p, flags);
        }
        dallocx_slow(p, flags)
    }
}

#[inline]
pub unsafe extern "C" fn sdallocx(p: *mut c_void, size: usize, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if tls::gate::<OP_FREE>() {
            return route::sized_free_unscoped(p, size, flags);
        }
        sdallocx_slow(p, size, flags)
    }
}

#[inline]
pub unsafe extern "C" fn nallocx(size: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::nallocx(size, flags) }
}

#[inline]
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

#[inline]
pub unsafe extern "C" fn mallctlnametomib(
    name: *const c_char,
    mibp: *mut usize,
    miblenp: *mut usize,
) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe { jem::mallctlnametomib(name, mibp, miblenp) }
}

#[inline]
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

#[inline]
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
        route::off_fast(
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
        route::off_fast(
            OP_REALLOC,
            || route::rallocx_unscoped(p, size, flags, 0),
            || route::rallocx(p, size, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn xallocx_slow(p: *mut c_void, size: usize, extra: usize, flags: c_int) -> usize {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        route::off_fast(
            OP_REALLOC,
            || route::xallocx_unscoped(p, size, extra, flags),
            || route::xallocx(p, size, extra, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn dallocx_slow(p: *mut c_void, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        route::off_fast(
            OP_FREE,
            || route::free_unscoped(p, flags),
            || route::sdallocx(p, 0, flags),
        )
    }
}

#[cold]
#[inline(never)]
unsafe fn sdallocx_slow(p: *mut c_void, size: usize, flags: c_int) {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        route::off_fast(
            OP_FREE,
            || route::sized_free_unscoped(p, size, flags),
            || route::sdallocx(p, size, flags),
        )
    }
}

// ------------------------------------------------ changes of user id
// Not allocator symbols: exported so that the stats segment can follow a
// daemon that drops privileges (`ids`), each a call into libc's own.

#[inline]
pub extern "C" fn setuid(uid: libc::uid_t) -> c_int {
    crate::entry::ids::setuid(uid)
}

#[inline]
pub extern "C" fn seteuid(euid: libc::uid_t) -> c_int {
    crate::entry::ids::seteuid(euid)
}

#[inline]
pub extern "C" fn setreuid(ruid: libc::uid_t, euid: libc::uid_t) -> c_int {
    crate::entry::ids::setreuid(ruid, euid)
}

#[inline]
pub extern "C" fn setresuid(ruid: libc::uid_t, euid: libc::uid_t, suid: libc::uid_t) -> c_int {
    crate::entry::ids::setresuid(ruid, euid, suid)
}

// ------------------------------------------------------------ the C names

/// Defines every C symbol of libmemscope.so (glibc's malloc family, glibc's
/// extras, jemalloc's extended API, the `memscope_*` API, the changes of
/// user id) in the crate that expands it, each a call into this crate.
/// Expanded once, by the preloaded library; never in a program that links
/// memscope as its Rust allocator (it would replace that program's C
/// `malloc` too, which `memscope::Memscope` promises not to do).
#[macro_export]
macro_rules! export_c_abi {
    () => {
        $crate::__export_malloc_free!();
        $crate::__export_capturing! { exports;
            calloc(n: usize, size: usize) -> *mut ::core::ffi::c_void;
            realloc(p: *mut ::core::ffi::c_void, size: usize) -> *mut ::core::ffi::c_void;
            reallocarray(p: *mut ::core::ffi::c_void, n: usize, size: usize) -> *mut ::core::ffi::c_void;
            posix_memalign(memptr: *mut *mut ::core::ffi::c_void, align: usize, size: usize) -> ::core::ffi::c_int;
            aligned_alloc(align: usize, size: usize) -> *mut ::core::ffi::c_void;
            memalign(align: usize, size: usize) -> *mut ::core::ffi::c_void;
            valloc(size: usize) -> *mut ::core::ffi::c_void;
            pvalloc(size: usize) -> *mut ::core::ffi::c_void;
            mallocx(size: usize, flags: ::core::ffi::c_int) -> *mut ::core::ffi::c_void;
            rallocx(p: *mut ::core::ffi::c_void, size: usize, flags: ::core::ffi::c_int) -> *mut ::core::ffi::c_void;
        }
        $crate::__export_fns! { exports;
            malloc_usable_size(p: *mut ::core::ffi::c_void) -> usize;
            free_sized(p: *mut ::core::ffi::c_void, size: usize);
            free_aligned_sized(p: *mut ::core::ffi::c_void, align: usize, size: usize);
            malloc_trim(pad: usize) -> ::core::ffi::c_int;
            mallinfo2() -> $crate::entry::glibc::Mallinfo2;
            mallinfo() -> $crate::entry::glibc::Mallinfo;
            mallopt(param: ::core::ffi::c_int, value: ::core::ffi::c_int) -> ::core::ffi::c_int;
            malloc_stats();
            xallocx(p: *mut ::core::ffi::c_void, size: usize, extra: usize, flags: ::core::ffi::c_int) -> usize;
            sallocx(p: *const ::core::ffi::c_void, flags: ::core::ffi::c_int) -> usize;
            dallocx(p: *mut ::core::ffi::c_void, flags: ::core::ffi::c_int);
            sdallocx(p: *mut ::core::ffi::c_void, size: usize, flags: ::core::ffi::c_int);
            nallocx(size: usize, flags: ::core::ffi::c_int) -> usize;
            mallctl(name: *const ::core::ffi::c_char, oldp: *mut ::core::ffi::c_void, oldlenp: *mut usize,
                    newp: *mut ::core::ffi::c_void, newlen: usize) -> ::core::ffi::c_int;
            mallctlnametomib(name: *const ::core::ffi::c_char, mibp: *mut usize, miblenp: *mut usize) -> ::core::ffi::c_int;
            mallctlbymib(mib: *const usize, miblen: usize, oldp: *mut ::core::ffi::c_void, oldlenp: *mut usize,
                         newp: *mut ::core::ffi::c_void, newlen: usize) -> ::core::ffi::c_int;
            malloc_stats_print(write_cb: $crate::entry::exports::WriteCb, cbopaque: *mut ::core::ffi::c_void,
                               opts: *const ::core::ffi::c_char);
            setuid(uid: $crate::entry::exports::uid_t) -> ::core::ffi::c_int;
            seteuid(euid: $crate::entry::exports::uid_t) -> ::core::ffi::c_int;
            setreuid(ruid: $crate::entry::exports::uid_t, euid: $crate::entry::exports::uid_t) -> ::core::ffi::c_int;
            setresuid(ruid: $crate::entry::exports::uid_t, euid: $crate::entry::exports::uid_t,
                      suid: $crate::entry::exports::uid_t) -> ::core::ffi::c_int;
        }
        $crate::__export_capturing! { api;
            memscope_push(flags: ::core::ffi::c_uint) -> ::core::ffi::c_uint;
            memscope_lib_push(flags: ::core::ffi::c_uint) -> ::core::ffi::c_uint;
        }
        $crate::__export_fns! { api;
            memscope_pop(saved: ::core::ffi::c_uint);
            memscope_current() -> ::core::ffi::c_uint;
            memscope_stats_flush();
            memscope_lock_acquired(lock: *const ::core::ffi::c_void, site: *const ::core::ffi::c_void);
            memscope_lock_released(lock: *const ::core::ffi::c_void) -> ::core::ffi::c_int;
            memscope_lib_lock_acquired(lock: *const ::core::ffi::c_void, site: *const ::core::ffi::c_void);
            memscope_lib_lock_released(lock: *const ::core::ffi::c_void) -> ::core::ffi::c_int;
            memscope_lib_lock_gate() -> *const ::core::ffi::c_void;
            memscope_lib_lock_enter(site: *const ::core::ffi::c_void);
            memscope_lib_lock_leave();
            memscope_reclaimer_register(name: *const ::core::ffi::c_char, reclaim: Option<$crate::entry::api::ReclaimFn>,
                                        arg: *mut ::core::ffi::c_void, needs: ::core::ffi::c_uint) -> ::core::ffi::c_int;
            memscope_reclaimer_unregister(id: ::core::ffi::c_int);
            memscope_test_fail_next(n: ::core::ffi::c_ulong);
            memscope_prepare(size: usize, count: usize) -> ::core::ffi::c_int;
            memscope_version() -> ::core::ffi::c_uint;
            memscope_lib_pop(saved: ::core::ffi::c_uint);
            memscope_lib_current() -> ::core::ffi::c_uint;
            memscope_lib_version() -> ::core::ffi::c_uint;
            memscope_lib_stats_flush();
            memscope_lib_reclaimer_register(name: *const ::core::ffi::c_char, reclaim: Option<$crate::entry::api::ReclaimFn>,
                                            arg: *mut ::core::ffi::c_void, needs: ::core::ffi::c_uint) -> ::core::ffi::c_int;
            memscope_lib_reclaimer_unregister(id: ::core::ffi::c_int);
            memscope_lib_test_fail_next(n: ::core::ffi::c_ulong);
            memscope_lib_prepare(size: usize, count: usize) -> ::core::ffi::c_int;
            memscope_lib_check_routed(probe: Option<unsafe extern "C" fn()>) -> ::core::ffi::c_int;
            memscope_lib_note_header(header_version: ::core::ffi::c_uint) -> ::core::ffi::c_int;
        }
    };
}

/// One `#[no_mangle]` function per line of `export_c_abi!`, calling the
/// function of that name in `$module`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_fns {
    ($module:ident; $($name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {$(
        #[no_mangle]
        #[allow(unused_unsafe, clippy::missing_safety_doc)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: the caller's contract is the C function's, which the
            // function called implements for every argument value.
            unsafe { $crate::$module::$name($($arg),*) }
        }
    )*};
}

/// The functions whose calls may record a call site (`stats::sites`):
/// those that allocate, and the pushes. On x86_64 Linux each is a naked
/// function that stores the stack and frame pointers it was entered with
/// in the thread's block (`ThreadState::caller_sp`/`caller_fp`), two
/// stores, then jumps to the function of that name in `$module`; the
/// record, if any, finds the call site from them. Elsewhere as
/// `__export_fns!` (no sites).
#[doc(hidden)]
#[macro_export]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! __export_capturing {
    ($module:ident; $($name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {$(
        #[no_mangle]
        #[unsafe(naked)]
        #[allow(clippy::missing_safety_doc)]
        pub unsafe extern "C" fn $name($($arg: $ty),*) $(-> $ret)? {
            ::core::arch::naked_asm!(
                ".p2align 6",
                "mov rax, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                "mov qword ptr fs:[rax + {sp}], rsp",
                "mov qword ptr fs:[rax + {fp}], rbp",
                "jmp {imp}",
                sp = const $crate::entry::exports::fast::CALLER_SP,
                fp = const $crate::entry::exports::fast::CALLER_FP,
                imp = sym $crate::$module::$name,
            )
        }
    )*};
}

#[doc(hidden)]
#[macro_export]
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
macro_rules! __export_capturing {
    ($($t:tt)*) => { $crate::__export_fns! { $($t)* } };
}

/// What the assembly `malloc` and `free` name (`__export_malloc_free!`).
#[doc(hidden)]
pub mod fast {
    pub use crate::entry::posix::{free_pool_block_c, free_slow_c, malloc_slow_c};
    pub use crate::pool::{BASE_OFFSET, POOL, RESERVED_OFFSET};
    pub use tikv_jemalloc_sys::{free as jem_free, malloc as jem_malloc};
    /// Offsets of the alloc and free countdowns from the thread's block.
    pub const ALLOC_COUNTDOWN: usize = crate::base::tls::countdown_offset(memscope_abi::OP_ALLOC);
    pub const FREE_COUNTDOWN: usize = crate::base::tls::countdown_offset(memscope_abi::OP_FREE);
    /// Offsets of `caller_sp` and `caller_fp` in the thread's block.
    pub const CALLER_SP: usize = core::mem::offset_of!(crate::base::tls::ThreadState, caller_sp);
    pub const CALLER_FP: usize = core::mem::offset_of!(crate::base::tls::ThreadState, caller_fp);
}

/// `malloc` and `free`: on x86_64 Linux, naked functions with the gate and
/// a direct jump to jemalloc (Rust's tail call went through the GOT,
/// `jmp *_rjem_malloc@GOTPCREL`, which the linker did not relax: 0.7 ns
/// of a 7.3 ns malloc+free pair here, docs/BENCHMARKS.md); `free` also
/// tests the pointer against the pool's range there, as `posix::free`
/// does. Elsewhere, `posix`'s versions.
///
/// Each starts with `.p2align 6`: rustc puts a naked function at the start
/// of its own section (`.text.malloc`), where the directive pads nothing
/// but raises the section's alignment, so the entry lands on a 64-byte
/// boundary like every other function here (`.cargo/config.toml`; naked
/// functions are not covered by it). c-tests/dropin/run.sh checks it.
#[doc(hidden)]
#[macro_export]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
macro_rules! __export_malloc_free {
    () => {
        /// C `malloc`: the gate, then jemalloc.
        #[no_mangle]
        #[unsafe(naked)]
        pub unsafe extern "C" fn malloc(size: usize) -> *mut ::core::ffi::c_void {
            ::core::arch::naked_asm!(
                ".p2align 6",
                "mov rax, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                "sub qword ptr fs:[rax + {cd}], 1",
                "js 2f",
                "jmp {fast}",
                // The slow path may record a call site: where it was
                // entered from (`__export_capturing!`).
                "2:",
                "mov qword ptr fs:[rax + {sp}], rsp",
                "mov qword ptr fs:[rax + {fp}], rbp",
                "jmp {slow}",
                cd = const $crate::entry::exports::fast::ALLOC_COUNTDOWN,
                sp = const $crate::entry::exports::fast::CALLER_SP,
                fp = const $crate::entry::exports::fast::CALLER_FP,
                slow = sym $crate::entry::exports::fast::malloc_slow_c,
                fast = sym $crate::entry::exports::fast::jem_malloc,
            )
        }

        /// C `free`: the gate, the pool's range, then jemalloc.
        #[no_mangle]
        #[unsafe(naked)]
        pub unsafe extern "C" fn free(p: *mut ::core::ffi::c_void) {
            ::core::arch::naked_asm!(
                ".p2align 6",
                "mov rax, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                "sub qword ptr fs:[rax + {cd}], 1",
                "js {slow}",
                "mov rcx, rdi",
                "sub rcx, qword ptr [rip + {pool} + {base}]",
                "cmp rcx, qword ptr [rip + {pool} + {reserved}]",
                "jb {in_pool}",
                "jmp {fast}",
                cd = const $crate::entry::exports::fast::FREE_COUNTDOWN,
                slow = sym $crate::entry::exports::fast::free_slow_c,
                pool = sym $crate::entry::exports::fast::POOL,
                base = const $crate::entry::exports::fast::BASE_OFFSET,
                reserved = const $crate::entry::exports::fast::RESERVED_OFFSET,
                in_pool = sym $crate::entry::exports::fast::free_pool_block_c,
                fast = sym $crate::entry::exports::fast::jem_free,
            )
        }
    };
}

#[doc(hidden)]
#[macro_export]
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
macro_rules! __export_malloc_free {
    () => {
        $crate::__export_fns! { exports;
            malloc(size: usize) -> *mut ::core::ffi::c_void;
            free(p: *mut ::core::ffi::c_void);
        }
    };
}

pub use libc::uid_t;
