//! Which memscope serves this process: the copy linked into the program
//! (`memscope-core`), or a libmemscope.so already loaded in it (preloaded,
//! or linked by a C library). Decided once, at the first call through this
//! crate, and never changed: a block must go back to the allocator that
//! made it.
//!
//! Two copies at once would be two jemallocs, two stats segments and two
//! sets of scope flags per thread, with scopes entered here acting on one
//! and the C code's allocations served by the other. So when a library is
//! loaded this crate forwards to it (one line on stderr says so), and the
//! linked copy stays idle.

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering::*};

use memscope_core::{api, exports};

pub type ReclaimFn = unsafe extern "C" fn(want: usize, arg: *mut c_void) -> usize;
pub type ProbeFn = unsafe extern "C" fn();

const UNRESOLVED: u8 = 0;
const LINKED: u8 = 1;
const LOADED: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNRESOLVED);

/// The loaded library's entry points, by the names its header uses.
const NAMES: [&core::ffi::CStr; 12] = [
    c"mallocx",
    c"rallocx",
    c"sdallocx",
    c"memscope_lib_push",
    c"memscope_lib_pop",
    c"memscope_lib_current",
    c"memscope_lib_version",
    c"memscope_lib_stats_flush",
    c"memscope_lib_reclaimer_register",
    c"memscope_lib_reclaimer_unregister",
    c"memscope_lib_check_routed",
    c"memscope_lib_prepare",
];
const MALLOCX: usize = 0;
const RALLOCX: usize = 1;
const SDALLOCX: usize = 2;
const PUSH: usize = 3;
const POP: usize = 4;
const CURRENT: usize = 5;
const VERSION: usize = 6;
const FLUSH: usize = 7;
const REGISTER: usize = 8;
const UNREGISTER: usize = 9;
const CHECK_ROUTED: usize = 10;
const PREPARE: usize = 11;

static LOADED_FNS: [AtomicPtr<c_void>; NAMES.len()] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; NAMES.len()];

#[inline(always)]
fn mode() -> u8 {
    let m = MODE.load(Relaxed);
    if m != UNRESOLVED {
        return m;
    }
    resolve()
}

/// Looks for a loaded libmemscope.so (`memscope_lib_version` is defined
/// only there: the linked copy exports no C names). `dlsym` may call
/// malloc: the C one, never this crate's allocator.
#[cold]
#[inline(never)]
fn resolve() -> u8 {
    let mut fns = [core::ptr::null_mut(); NAMES.len()];
    for (f, name) in fns.iter_mut().zip(NAMES) {
        // SAFETY: RTLD_DEFAULT and a NUL-terminated name.
        *f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    }
    // The allocation entry points and the version are required; the
    // rest may be missing in an older library (then: no-ops).
    let loaded = !fns[MALLOCX].is_null()
        && !fns[RALLOCX].is_null()
        && !fns[SDALLOCX].is_null()
        && !fns[VERSION].is_null();
    let m = if loaded {
        for (slot, f) in LOADED_FNS.iter().zip(fns) {
            slot.store(f, Relaxed);
        }
        LOADED
    } else {
        LINKED
    };
    match MODE.compare_exchange(UNRESOLVED, m, Release, Acquire) {
        Ok(_) => {
            if m == LOADED {
                say_forwarding();
            }
            m
        }
        Err(first) => first,
    }
}

/// One line, written with `write(2)` from a fixed buffer (this may run
/// inside the program's first allocation).
fn say_forwarding() {
    // SAFETY: getenv with a NUL-terminated name; the result is read at
    // once, as a NUL-terminated string, or NULL.
    let log = unsafe { libc::getenv(c"MEMSCOPE_LOG".as_ptr()) };
    // SAFETY: as above.
    if !log.is_null() && unsafe { core::ffi::CStr::from_ptr(log) } == c"off" {
        return;
    }
    let line = b"memscope: this program links memscope and libmemscope.so is loaded too (LD_PRELOAD?): the loaded library serves every allocation and scope\n";
    // SAFETY: writing a valid buffer to stderr.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

#[inline(always)]
fn loaded<F: Copy>(i: usize) -> Option<F> {
    let p = LOADED_FNS[i].load(Relaxed);
    if p.is_null() {
        return None;
    }
    debug_assert_eq!(core::mem::size_of::<F>(), core::mem::size_of::<*mut c_void>());
    // SAFETY: `p` is the address `dlsym` gave for NAMES[i], whose C type
    // is `F` (each caller names the type of the function it asks for).
    Some(unsafe { core::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// True if a loaded libmemscope.so serves this process.
pub fn is_loaded() -> bool {
    mode() == LOADED
}

type MallocxFn = unsafe extern "C" fn(usize, c_int) -> *mut c_void;
type RallocxFn = unsafe extern "C" fn(*mut c_void, usize, c_int) -> *mut c_void;
type SdallocxFn = unsafe extern "C" fn(*mut c_void, usize, c_int);

/// # Safety
/// As jemalloc's `mallocx`.
#[inline(always)]
pub unsafe fn mallocx(size: usize, flags: c_int) -> *mut c_void {
    if mode() == LINKED {
        // SAFETY: the caller's contract.
        return unsafe { exports::mallocx(size, flags) };
    }
    match loaded::<MallocxFn>(MALLOCX) {
        // SAFETY: the caller's contract.
        Some(f) => unsafe { f(size, flags) },
        None => core::ptr::null_mut(),
    }
}

/// # Safety
/// As jemalloc's `rallocx`.
#[inline(always)]
pub unsafe fn rallocx(p: *mut c_void, size: usize, flags: c_int) -> *mut c_void {
    if mode() == LINKED {
        // SAFETY: the caller's contract.
        return unsafe { exports::rallocx(p, size, flags) };
    }
    match loaded::<RallocxFn>(RALLOCX) {
        // SAFETY: the caller's contract.
        Some(f) => unsafe { f(p, size, flags) },
        None => core::ptr::null_mut(),
    }
}

/// # Safety
/// As jemalloc's `sdallocx`.
#[inline(always)]
pub unsafe fn sdallocx(p: *mut c_void, size: usize, flags: c_int) {
    if mode() == LINKED {
        // SAFETY: the caller's contract.
        return unsafe { exports::sdallocx(p, size, flags) };
    }
    if let Some(f) = loaded::<SdallocxFn>(SDALLOCX) {
        // SAFETY: the caller's contract.
        unsafe { f(p, size, flags) }
    }
}

pub fn push(flags: c_uint) -> c_uint {
    if mode() == LINKED {
        return api::memscope_push(flags);
    }
    // SAFETY: the loaded library's push accepts any value.
    loaded::<extern "C" fn(c_uint) -> c_uint>(PUSH).map_or(0, |f| f(flags))
}

pub fn pop(saved: c_uint) {
    if mode() == LINKED {
        return api::memscope_pop(saved);
    }
    if let Some(f) = loaded::<extern "C" fn(c_uint)>(POP) {
        f(saved)
    }
}

pub fn current() -> c_uint {
    if mode() == LINKED {
        return api::memscope_current();
    }
    loaded::<extern "C" fn() -> c_uint>(CURRENT).map_or(0, |f| f())
}

pub fn version() -> c_uint {
    if mode() == LINKED {
        return api::memscope_version();
    }
    loaded::<extern "C" fn() -> c_uint>(VERSION).map_or(0, |f| f())
}

pub fn flush() {
    if mode() == LINKED {
        return api::memscope_stats_flush();
    }
    if let Some(f) = loaded::<extern "C" fn()>(FLUSH) {
        f()
    }
}

/// # Safety
/// `name` is NUL-terminated; `f` is callable with `arg` from any thread
/// until unregistered.
pub unsafe fn register(name: *const c_char, f: ReclaimFn, arg: *mut c_void, needs: c_uint) -> c_int {
    if mode() == LINKED {
        // SAFETY: the caller's contract.
        return unsafe { api::memscope_reclaimer_register(name, Some(f), arg, needs) };
    }
    type RegisterFn = unsafe extern "C" fn(*const c_char, Option<ReclaimFn>, *mut c_void, c_uint) -> c_int;
    // SAFETY: the caller's contract.
    loaded::<RegisterFn>(REGISTER).map_or(-1, |r| unsafe { r(name, Some(f), arg, needs) })
}

pub fn unregister(id: c_int) {
    if mode() == LINKED {
        return api::memscope_reclaimer_unregister(id);
    }
    if let Some(f) = loaded::<extern "C" fn(c_int)>(UNREGISTER) {
        f(id)
    }
}

/// 1: memscope served `probe`'s allocation; 0: another allocator did;
/// -1: cannot tell (see `memscope_lib_check_routed`).
pub fn check_routed(probe: ProbeFn) -> c_int {
    if mode() == LINKED {
        // SAFETY: `probe` is a plain function callable on this thread.
        return unsafe { api::memscope_lib_check_routed(Some(probe)) };
    }
    type CheckFn = unsafe extern "C" fn(Option<ProbeFn>) -> c_int;
    // SAFETY: as above.
    loaded::<CheckFn>(CHECK_ROUTED).map_or(-1, |f| unsafe { f(Some(probe)) })
}

/// 0, or -1 with errno set (see `memscope_lib_prepare`); -1 with ENOSYS
/// from a loaded library too old to have it.
pub fn prepare(size: usize, count: usize) -> c_int {
    if mode() == LINKED {
        return api::memscope_prepare(size, count);
    }
    match loaded::<extern "C" fn(usize, usize) -> c_int>(PREPARE) {
        Some(f) => f(size, count),
        None => {
            // SAFETY: errno is this thread's.
            unsafe { *libc::__errno_location() = libc::ENOSYS };
            -1
        }
    }
}
