//! The `memscope_*` C API (`ffi-include/memscope.h`).
//!
//! Rule: every entry point is total: any argument value is accepted,
//! nothing panics, nothing unwinds.

use core::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

use crate::nofail::reclaim;
pub use crate::nofail::reclaim::ReclaimFn;
use crate::{nofail, scope};

/// # Safety
/// None: callable from any thread, including signal handlers once the
/// thread has pushed NORECLAIM before.
#[inline]
pub extern "C" fn memscope_push(flags: c_uint) -> c_uint {
    scope::push(flags)
}

#[inline]
pub extern "C" fn memscope_pop(saved: c_uint) {
    scope::pop(saved)
}

#[inline]
pub extern "C" fn memscope_current() -> c_uint {
    scope::current()
}

/// The calling thread took the program lock at `lock`, in a call that
/// returns to `site` (see the header; `libmemscope_locks.so` calls this).
#[inline]
pub extern "C" fn memscope_lock_acquired(lock: *const c_void, site: *const c_void) {
    scope::lock::acquired(lock as usize, site as usize)
}

/// The calling thread is about to release the program lock at `lock`: 1
/// if its acquisition was counted (and so the release is), 0 if not.
#[inline]
pub extern "C" fn memscope_lock_released(lock: *const c_void) -> c_int {
    c_int::from(scope::lock::released(lock as usize))
}

#[inline]
pub extern "C" fn memscope_lib_lock_acquired(lock: *const c_void, site: *const c_void) {
    memscope_lock_acquired(lock, site)
}

#[inline]
pub extern "C" fn memscope_lib_lock_released(lock: *const c_void) -> c_int {
    memscope_lock_released(lock)
}

/// For libmemscope_locks.so: where the calling thread's blocks lie, for
/// it to run the usual lock sections itself (`memscope_abi::gate`), or
/// NULL where it cannot.
#[inline]
pub extern "C" fn memscope_lib_lock_gate() -> *const c_void {
    scope::lock::gate_info().map_or(core::ptr::null(), |i| i as *const _ as *const c_void)
}

/// For libmemscope_locks.so: it tracked a lock and left beginning the
/// section (if none is on) to memscope.
#[inline]
pub extern "C" fn memscope_lib_lock_enter(site: *const c_void) {
    scope::lock::enter_tracked(site as usize)
}

/// For libmemscope_locks.so: it untracked the thread's last lock and left
/// ending the section to memscope.
#[inline]
pub extern "C" fn memscope_lib_lock_leave() {
    scope::lock::leave_tracked()
}

/// Publishes the calling thread's exact counts (see the header).
#[inline]
pub extern "C" fn memscope_stats_flush() {
    if crate::base::tls::flags() & crate::base::tls::THREAD_UNSEEN == 0 {
        crate::stats::thread::flush(crate::base::tls::state());
    }
}

/// # Safety
/// `name` is NULL or a NUL-terminated string; `reclaim` may be called with
/// `arg` from any thread until unregistered.
#[inline]
pub unsafe extern "C" fn memscope_reclaimer_register(
    name: *const c_char,
    reclaim: Option<ReclaimFn>,
    arg: *mut c_void,
    needs: c_uint,
) -> c_int {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let id = reclaim::register(name, reclaim, arg, needs);
        // The soft limit and memory pressure are watched by the maintenance
        // thread: make sure it runs (never from inside NORECLAIM, where
        // starting a thread is out).
        let config = &crate::base::config::CONFIG;
        let relaxed = core::sync::atomic::Ordering::Relaxed;
        let watched = config.soft_limit.load(relaxed) > 0 || config.pressure_window_us.load(relaxed) > 0;
        if id > 0 && watched && scope::current() & scope::NORECLAIM == 0 {
            crate::daemon::maintenance::ensure_started();
        }
        id
    }
}

#[inline]
pub extern "C" fn memscope_reclaimer_unregister(id: c_int) {
    reclaim::unregister(id)
}

/// Makes sure `count` blocks of `size` bytes can be served inside
/// NORECLAIM without waiting for the maintenance thread (see the header).
/// 0, or -1 with errno: EINVAL (size 0 or above what the pool serves;
/// called inside NORECLAIM), ENOMEM (the pool could not hold them).
#[inline]
pub extern "C" fn memscope_prepare(size: usize, count: usize) -> c_int {
    let fail = |e: c_int| {
        crate::base::log::set_errno(e);
        -1
    };
    if size == 0 || scope::current() & scope::NORECLAIM != 0 {
        return fail(libc::EINVAL);
    }
    let Some(c) = crate::base::sizeclass::for_request(size, 0) else {
        return fail(libc::EINVAL);
    };
    if crate::base::tls::flags() & crate::base::tls::THREAD_UNSEEN != 0 {
        crate::scope::init::thread_first_call();
    }
    let st = crate::base::tls::state();
    if !scope::set_up_noreclaim(st) {
        return fail(libc::ENOMEM);
    }
    if !crate::front::carve::prepare(c, count as u64) {
        return fail(libc::ENOMEM);
    }
    0
}

#[inline]
pub extern "C" fn memscope_lib_prepare(size: usize, count: usize) -> c_int {
    memscope_prepare(size, count)
}

/// Testing: the next `n` ordinary allocation attempts made under NOFAIL
/// fail as if memory were exhausted.
#[inline]
pub extern "C" fn memscope_test_fail_next(n: c_ulong) {
    nofail::inject_faults(n)
}

/// `MAJOR << 16 | MINOR << 8 | PATCH`, as `MEMSCOPE_VERSION` in the header.
#[inline]
pub extern "C" fn memscope_version() -> c_uint {
    VERSION
}

// ---------------------------------------------- the header's entry names
// `memscope.h` (since 0.1.1) declares these weak and wraps each in a
// `static inline` function of the public name that checks it for NULL, so
// that a program built with the header runs without the library (its
// calls become no-ops) instead of calling through a NULL weak symbol. The
// public names above stay exported for binaries built against the older
// header, which called them directly.

#[inline]
pub extern "C" fn memscope_lib_push(flags: c_uint) -> c_uint {
    scope::push(flags)
}

#[inline]
pub extern "C" fn memscope_lib_pop(saved: c_uint) {
    scope::pop(saved)
}

#[inline]
pub extern "C" fn memscope_lib_current() -> c_uint {
    memscope_current()
}

#[inline]
pub extern "C" fn memscope_lib_version() -> c_uint {
    VERSION
}

#[inline]
pub extern "C" fn memscope_lib_stats_flush() {
    memscope_stats_flush()
}

/// # Safety
/// As `memscope_reclaimer_register`.
#[inline]
pub unsafe extern "C" fn memscope_lib_reclaimer_register(
    name: *const c_char,
    reclaim: Option<ReclaimFn>,
    arg: *mut c_void,
    needs: c_uint,
) -> c_int {
    // SAFETY: the caller's contract is `memscope_reclaimer_register`'s.
    unsafe { memscope_reclaimer_register(name, reclaim, arg, needs) }
}

#[inline]
pub extern "C" fn memscope_lib_reclaimer_unregister(id: c_int) {
    reclaim::unregister(id)
}

#[inline]
pub extern "C" fn memscope_lib_test_fail_next(n: c_ulong) {
    nofail::inject_faults(n)
}

/// Whether the program's allocations reach memscope: runs `probe` (which
/// should allocate and free once through the program's allocator) and
/// compares this thread's exact allocation calls before and after.
/// Returns 1 if memscope served the probe; 0 if not, and then, once per
/// process, one line on stderr and the `scopes_bypassed` event (the scopes
/// of a program whose allocator bypasses memscope do nothing); -1 if it
/// cannot tell: no probe, or the thread is inside NORECLAIM (where nothing
/// may be written: ask before entering the scope).
///
/// # Safety
/// `probe` is NULL or a function callable on this thread.
#[inline]
pub unsafe extern "C" fn memscope_lib_check_routed(probe: Option<unsafe extern "C" fn()>) -> c_int {
    let Some(probe) = probe else { return -1 };
    let flags = scope::current();
    if flags & scope::NORECLAIM != 0 {
        return -1;
    }
    let calls = || crate::stats::thread::calls_in_context(memscope_abi::OP_ALLOC, flags);
    let before = calls();
    // SAFETY: the caller's contract.
    unsafe { probe() };
    if calls() != before {
        return 1;
    }
    crate::base::counters::count(crate::base::counters::Event::ScopesBypassed);
    static WARNED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, core::sync::atomic::Ordering::Relaxed) {
        crate::base::log::warn(format_args!(
            "a scope was entered but this program's allocations do not go through memscope (another allocator serves them): its scopes do nothing"
        ));
    }
    0
}

/// Called by `memscope.h`'s `memscope_push` once per file that includes
/// it, with that header's `MEMSCOPE_VERSION`: if its MAJOR.MINOR differs
/// from the library's, one line says so (once per process). Returns 1 when
/// done, 0 to be asked again (inside NORECLAIM, where nothing is written).
#[inline]
pub extern "C" fn memscope_lib_note_header(header_version: c_uint) -> c_int {
    if scope::current() & scope::NORECLAIM != 0 {
        return 0;
    }
    if header_version >> 8 != VERSION >> 8 {
        static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        if !SAID.swap(true, core::sync::atomic::Ordering::Relaxed) {
            let v = |x: c_uint| (x >> 16, (x >> 8) & 0xff, x & 0xff);
            let (h, l) = (v(header_version), v(VERSION));
            crate::base::log::warn(format_args!(
                "this program was built with memscope.h {}.{}.{} and runs with libmemscope {}.{}.{}: what one of them lacks does nothing; rebuild against the installed header",
                h.0, h.1, h.2, l.0, l.1, l.2
            ));
        }
    }
    1
}

/// `MAJOR << 16 | MINOR << 8 | PATCH` of this build.
pub const VERSION: c_uint = crate::base::config::VERSION;

#[cfg(test)]
mod tests {
    use super::*;

    /// memscope.h, read at run time: a packaged crate does not have it.
    fn header() -> Option<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../ffi-include/memscope.h");
        let h = std::fs::read_to_string(path).ok();
        if h.is_none() {
            eprintln!("skipped: {path} is not here (a packaged crate)");
        }
        h
    }

    /// The header's version macros, the runtime value and Cargo agree.
    #[test]
    fn header_version_macros_match_cargo() {
        let Some(header) = header() else { return };
        let macro_value = |name: &str| -> u32 {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} missing from memscope.h"));
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        let (major, minor, patch) = (
            macro_value("MEMSCOPE_VERSION_MAJOR"),
            macro_value("MEMSCOPE_VERSION_MINOR"),
            macro_value("MEMSCOPE_VERSION_PATCH"),
        );
        assert_eq!(major.to_string(), env!("CARGO_PKG_VERSION_MAJOR"));
        assert_eq!(minor.to_string(), env!("CARGO_PKG_VERSION_MINOR"));
        assert_eq!(patch.to_string(), env!("CARGO_PKG_VERSION_PATCH"));
        assert_eq!(memscope_version(), (major << 16) | (minor << 8) | patch);
    }

    /// The flag values in the header are the ones the shim implements.
    #[test]
    fn header_flags_match_scope_constants() {
        let Some(header) = header() else { return };
        for (name, value) in [
            ("MEMSCOPE_NORECLAIM", crate::scope::NORECLAIM),
            ("MEMSCOPE_NOWARN", crate::scope::NOWARN),
            ("MEMSCOPE_NOFAIL", crate::scope::NOFAIL),
            ("MEMSCOPE_NOFS", crate::scope::NOFS),
            ("MEMSCOPE_NOIO", crate::scope::NOIO),
        ] {
            let want = format!("#define {name} {value:#04x}u");
            assert!(
                header
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == want),
                "memscope.h lacks `{want}`"
            );
        }
    }
}
