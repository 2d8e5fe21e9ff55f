//! libmemscope_locks.so: lock sections for programs that cannot be
//! changed. Preloaded after libmemscope.so, it interposes pthread's mutex,
//! rwlock and spinlock calls and the condition waits, and tells memscope
//! when a thread takes its first lock and releases its last
//! (`memscope_lock_acquired`, `memscope_lock_released`): while a thread
//! holds one, it is in the scope `MEMSCOPE_LOCK_SCOPE` names (`report`,
//! the default: counted only; `noreclaim`; `noreclaim,nofail`), and what
//! it allocates is counted apart in the stats segment (`memscope-stat
//! locks`). docs/LOCKS.md is the manual.
//!
//! - A lock counts once the real call has taken it, and stops counting
//!   before the real release: the program's own futex waits and wakes stay
//!   outside the section. A condition wait releases the mutex for its
//!   wait and takes it back after, outside the section in between.
//! - Locks taken by memscope and its jemalloc (inside libmemscope.so: the
//!   caller's return address says so) are passed through uncounted.
//! - Nothing here allocates, takes a lock of its own or makes a syscall
//!   after start-up: each interposed call is its real one, a range test
//!   and, for the first lock and the last release, one call into memscope.
//! - Without libmemscope.so loaded, every call is passed through.
//!
//! x86_64 Linux only (the callers' return addresses are read by naked
//! entry stubs); elsewhere the library is empty.

#![no_std]

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod hooks;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod interpose;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod real;

/// Resolves everything once the library is loaded (calls that come
/// before, from earlier constructors, resolve what they need themselves).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = {
    extern "C" fn init() {
        real::resolve_all();
        hooks::find_memscope();
    }
    init
};

/// No panic can happen here (no indexing, no arithmetic that overflows,
/// no unwrap); if one did, the process aborts rather than unwinding into C.
#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort(3) is always safe to call.
    unsafe { libc::abort() }
}
