//! The interposed pthread calls.
//!
//! Acquisitions (mutex, rwlock and spinlock lock, try, timed and clock
//! calls) are naked entry stubs: they call the real function with the
//! caller's arguments, keeping only the lock's address on the stack, then
//! jump to `took` with the lock, the caller's return address and the
//! result; `took` returns the result to the caller. A Rust function around
//! the real call kept three registers on the stack across it, and the
//! stores ahead of the lock's atomic instruction cost more than the rest
//! of the section (D64). The stubs carry CFI, so that a debugger or
//! profiler unwinds through a thread blocked in the real call.
//!
//! Releases and condition waits are stubs that pass the caller's return
//! address as one more argument (in the next argument register) and jump
//! to their `*_at` function. A release stops counting before the real
//! call, which it then jumps to: a lock the thread was seen to take is
//! its own, and its release cannot fail; a release counted only by
//! number (beyond the tracked locks) is called and undone if it fails. A
//! condition wait stops counting its mutex for the wait and counts it
//! again after.
//!
//! Acquisitions count when the real call took the lock (0; and a robust
//! mutex's `EOWNERDEAD`, which also hands it over).

use core::ffi::{c_int, c_void};

use crate::hooks::{acquired, by_program, memscope_leave, recounted, released, Counted};
use crate::real::{self, Real};

type P = *mut c_void;

/// `name` calls the real function `real` with its arguments, then jumps
/// to `took(lock, return address, result)`. A call made before the real
/// function is found resolves it first (`real::resolve`), every argument
/// register kept.
macro_rules! acquisition {
    ($($name:ident => $real:path;)*) => {$(
        #[no_mangle]
        #[unsafe(naked)]
        #[allow(clippy::missing_safety_doc)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                ".cfi_startproc",
                // The lock's address, kept; the stack is 16-byte aligned.
                "push rdi",
                ".cfi_adjust_cfa_offset 8",
                "mov rax, qword ptr [rip + {real}]",
                "test rax, rax",
                "jz 3f",
                "2:",
                "call rax",
                "pop rdi",
                ".cfi_adjust_cfa_offset -8",
                "mov rsi, qword ptr [rsp]",
                "mov edx, eax",
                "jmp {took}",
                // Not found yet: resolve, keeping the arguments.
                "3:",
                ".cfi_adjust_cfa_offset 8",
                "push rsi",
                ".cfi_adjust_cfa_offset 8",
                "push rdx",
                ".cfi_adjust_cfa_offset 8",
                "push rcx",
                ".cfi_adjust_cfa_offset 8",
                "push r8",
                ".cfi_adjust_cfa_offset 8",
                "push r9",
                ".cfi_adjust_cfa_offset 8",
                "sub rsp, 8",
                ".cfi_adjust_cfa_offset 8",
                "lea rdi, [rip + {real}]",
                "call {resolve}",
                "add rsp, 8",
                ".cfi_adjust_cfa_offset -8",
                "pop r9",
                ".cfi_adjust_cfa_offset -8",
                "pop r8",
                ".cfi_adjust_cfa_offset -8",
                "pop rcx",
                ".cfi_adjust_cfa_offset -8",
                "pop rdx",
                ".cfi_adjust_cfa_offset -8",
                "pop rsi",
                ".cfi_adjust_cfa_offset -8",
                "mov rdi, qword ptr [rsp]",
                "jmp 2b",
                ".cfi_endproc",
                real = sym $real,
                resolve = sym real::resolve,
                took = sym took,
            )
        }
    )*};
}

acquisition! {
    pthread_mutex_lock => real::MUTEX_LOCK;
    pthread_mutex_trylock => real::MUTEX_TRYLOCK;
    pthread_mutex_timedlock => real::MUTEX_TIMEDLOCK;
    pthread_mutex_clocklock => real::MUTEX_CLOCKLOCK;
    pthread_rwlock_rdlock => real::RWLOCK_RDLOCK;
    pthread_rwlock_tryrdlock => real::RWLOCK_TRYRDLOCK;
    pthread_rwlock_timedrdlock => real::RWLOCK_TIMEDRDLOCK;
    pthread_rwlock_clockrdlock => real::RWLOCK_CLOCKRDLOCK;
    pthread_rwlock_wrlock => real::RWLOCK_WRLOCK;
    pthread_rwlock_trywrlock => real::RWLOCK_TRYWRLOCK;
    pthread_rwlock_timedwrlock => real::RWLOCK_TIMEDWRLOCK;
    pthread_rwlock_clockwrlock => real::RWLOCK_CLOCKWRLOCK;
    pthread_spin_lock => real::SPIN_LOCK;
    pthread_spin_trylock => real::SPIN_TRYLOCK;
}

/// After an acquisition of `lock` that returned `r`, in a call that
/// returns to `ra` (the stubs jump here; this returns to the caller).
unsafe extern "C" fn took(lock: P, ra: usize, r: c_int) -> c_int {
    if (r == 0 || r == libc::EOWNERDEAD) && by_program(ra) {
        acquired(lock, ra);
    }
    r
}

/// `name` calls `imp` with its arguments and the caller's return address
/// in register `ra` (the argument after the last).
macro_rules! stub {
    ($($name:ident => $imp:ident, $ra:literal;)*) => {$(
        #[no_mangle]
        #[unsafe(naked)]
        #[allow(clippy::missing_safety_doc)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(
                concat!("mov ", $ra, ", qword ptr [rsp]"),
                "jmp {imp}",
                imp = sym $imp,
            )
        }
    )*};
}

stub! {
    pthread_mutex_unlock => mutex_unlock_at, "rsi";
    pthread_rwlock_unlock => rwlock_unlock_at, "rsi";
    pthread_spin_unlock => spin_unlock_at, "rsi";
    pthread_cond_wait => cond_wait_at, "rdx";
    pthread_cond_timedwait => cond_timedwait_at, "rcx";
    pthread_cond_clockwait => cond_clockwait_at, "r8";
}

/// The real function's address as a function of its C type.
macro_rules! call {
    ($real:expr, fn($($t:ty),*), $($a:expr),*) => {{
        let f: unsafe extern "C" fn($($t),*) -> c_int = unsafe { core::mem::transmute::<usize, _>($real.get()) };
        // SAFETY: the real pthread function, with the caller's arguments.
        unsafe { f($($a),*) }
    }};
}

/// A release through `real` of `lock`: the usual one counted here, then a
/// jump to the real call (no register kept across a call: none is made).
#[inline(always)]
fn release(real: &'static Real, lock: P, ra: usize) -> c_int {
    if by_program(ra) {
        if let Some(c) = released(lock) {
            if !c.by_address || c.memscope_leaves {
                return release_slow(real, lock, ra, c);
            }
        }
    }
    let a = real.found();
    if a == 0 {
        return call!(real, fn(P), lock);
    }
    // SAFETY: the real pthread function, with the caller's argument.
    unsafe { core::mem::transmute::<usize, unsafe extern "C" fn(P) -> c_int>(a)(lock) }
}

/// A release whose section memscope ends (it leaves NORECLAIM), or one
/// counted by number only, which is undone if the real call fails.
#[cold]
#[inline(never)]
fn release_slow(real: &'static Real, lock: P, ra: usize, c: Counted) -> c_int {
    if c.memscope_leaves {
        memscope_leave();
    }
    let r = call!(real, fn(P), lock);
    if r != 0 && !c.by_address {
        // Not released after all: still held, and counted as before (by
        // number: the thread may not own it).
        recounted(ra);
    }
    r
}

type Ts = *const libc::timespec;

/// A condition wait on mutex `m`: not held while the thread waits.
#[inline(always)]
fn wait(m: P, ra: usize, waits: impl FnOnce() -> c_int) -> c_int {
    let counted = if by_program(ra) { released(m) } else { None };
    if counted.is_some_and(|c| c.memscope_leaves) {
        memscope_leave();
    }
    let r = waits();
    match counted {
        // Every return hands the mutex back, errors included.
        Some(c) if c.by_address => acquired(m, ra),
        Some(_) => recounted(ra),
        None => {}
    }
    r
}

/// True if glibc refuses a wait with this deadline before it releases the
/// mutex (EINVAL): such a wait is passed through uncounted (counting it
/// ended the section and began another, the mutex held all along).
fn refused_at_once(clock: c_int, t: Ts) -> bool {
    // SAFETY: a deadline the caller passes to the real call too (a NULL
    // one is left to glibc).
    let bad_time = !t.is_null() && !(0..1_000_000_000).contains(&unsafe { (*t).tv_nsec });
    bad_time || clock != libc::CLOCK_REALTIME && clock != libc::CLOCK_MONOTONIC
}

unsafe extern "C" fn mutex_unlock_at(m: P, ra: usize) -> c_int {
    release(&real::MUTEX_UNLOCK, m, ra)
}
unsafe extern "C" fn rwlock_unlock_at(l: P, ra: usize) -> c_int {
    release(&real::RWLOCK_UNLOCK, l, ra)
}
unsafe extern "C" fn spin_unlock_at(s: P, ra: usize) -> c_int {
    release(&real::SPIN_UNLOCK, s, ra)
}
unsafe extern "C" fn cond_wait_at(c: P, m: P, ra: usize) -> c_int {
    wait(m, ra, || call!(real::COND_WAIT, fn(P, P), c, m))
}
unsafe extern "C" fn cond_timedwait_at(c: P, m: P, t: Ts, ra: usize) -> c_int {
    if refused_at_once(libc::CLOCK_REALTIME, t) {
        return call!(real::COND_TIMEDWAIT, fn(P, P, Ts), c, m, t);
    }
    wait(m, ra, || call!(real::COND_TIMEDWAIT, fn(P, P, Ts), c, m, t))
}
unsafe extern "C" fn cond_clockwait_at(c: P, m: P, k: c_int, t: Ts, ra: usize) -> c_int {
    if refused_at_once(k, t) {
        return call!(real::COND_CLOCKWAIT, fn(P, P, c_int, Ts), c, m, k, t);
    }
    wait(m, ra, || {
        call!(real::COND_CLOCKWAIT, fn(P, P, c_int, Ts), c, m, k, t)
    })
}
