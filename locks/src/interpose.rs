//! The interposed pthread calls. Each exported name is a naked stub that
//! passes its caller's return address as one more argument (in the next
//! argument register) and jumps to the `*_at` function that does the work:
//! the real call, and memscope told of the first lock taken and the last
//! released by program code (`hooks`).
//!
//! Acquisitions count when the real call took the lock (0; and a robust
//! mutex's `EOWNERDEAD`, which also hands it over); releases stop counting
//! before the real call (undone if it fails); a condition wait stops
//! counting its mutex for the wait and counts it again after.

use core::ffi::{c_int, c_void};

use crate::hooks::{acquired, by_program, released};
use crate::real::{self, Real};

type P = *mut c_void;

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
    pthread_mutex_lock => mutex_lock_at, "rsi";
    pthread_mutex_trylock => mutex_trylock_at, "rsi";
    pthread_mutex_timedlock => mutex_timedlock_at, "rdx";
    pthread_mutex_clocklock => mutex_clocklock_at, "rcx";
    pthread_mutex_unlock => mutex_unlock_at, "rsi";
    pthread_rwlock_rdlock => rwlock_rdlock_at, "rsi";
    pthread_rwlock_tryrdlock => rwlock_tryrdlock_at, "rsi";
    pthread_rwlock_timedrdlock => rwlock_timedrdlock_at, "rdx";
    pthread_rwlock_clockrdlock => rwlock_clockrdlock_at, "rcx";
    pthread_rwlock_wrlock => rwlock_wrlock_at, "rsi";
    pthread_rwlock_trywrlock => rwlock_trywrlock_at, "rsi";
    pthread_rwlock_timedwrlock => rwlock_timedwrlock_at, "rdx";
    pthread_rwlock_clockwrlock => rwlock_clockwrlock_at, "rcx";
    pthread_rwlock_unlock => rwlock_unlock_at, "rsi";
    pthread_spin_lock => spin_lock_at, "rsi";
    pthread_spin_trylock => spin_trylock_at, "rsi";
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

/// After an acquisition of `lock` that returned `r`.
#[inline(always)]
fn took(lock: P, r: c_int, ra: usize) -> c_int {
    if (r == 0 || r == libc::EOWNERDEAD) && by_program(ra) {
        acquired(lock, ra);
    }
    r
}

/// A release through `real` of `lock`.
#[inline(always)]
fn release(real: &Real, lock: P, ra: usize) -> c_int {
    let counted = by_program(ra) && released(lock);
    let r = call!(real, fn(P), lock);
    if counted && r != 0 {
        // Not released after all: still held as before.
        acquired(lock, ra);
    }
    r
}

/// A condition wait on mutex `m`: not held while the thread waits.
#[inline(always)]
fn wait(m: P, ra: usize, waits: impl FnOnce() -> c_int) -> c_int {
    let counted = by_program(ra) && released(m);
    let r = waits();
    if counted {
        // Every return hands the mutex back, errors included.
        acquired(m, ra);
    }
    r
}

type Ts = *const libc::timespec;

unsafe extern "C" fn mutex_lock_at(m: P, ra: usize) -> c_int {
    took(m, call!(real::MUTEX_LOCK, fn(P), m), ra)
}
unsafe extern "C" fn mutex_trylock_at(m: P, ra: usize) -> c_int {
    took(m, call!(real::MUTEX_TRYLOCK, fn(P), m), ra)
}
unsafe extern "C" fn mutex_timedlock_at(m: P, t: Ts, ra: usize) -> c_int {
    took(m, call!(real::MUTEX_TIMEDLOCK, fn(P, Ts), m, t), ra)
}
unsafe extern "C" fn mutex_clocklock_at(m: P, c: c_int, t: Ts, ra: usize) -> c_int {
    took(m, call!(real::MUTEX_CLOCKLOCK, fn(P, c_int, Ts), m, c, t), ra)
}
unsafe extern "C" fn mutex_unlock_at(m: P, ra: usize) -> c_int {
    release(&real::MUTEX_UNLOCK, m, ra)
}
unsafe extern "C" fn rwlock_rdlock_at(l: P, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_RDLOCK, fn(P), l), ra)
}
unsafe extern "C" fn rwlock_tryrdlock_at(l: P, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_TRYRDLOCK, fn(P), l), ra)
}
unsafe extern "C" fn rwlock_timedrdlock_at(l: P, t: Ts, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_TIMEDRDLOCK, fn(P, Ts), l, t), ra)
}
unsafe extern "C" fn rwlock_clockrdlock_at(l: P, c: c_int, t: Ts, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_CLOCKRDLOCK, fn(P, c_int, Ts), l, c, t), ra)
}
unsafe extern "C" fn rwlock_wrlock_at(l: P, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_WRLOCK, fn(P), l), ra)
}
unsafe extern "C" fn rwlock_trywrlock_at(l: P, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_TRYWRLOCK, fn(P), l), ra)
}
unsafe extern "C" fn rwlock_timedwrlock_at(l: P, t: Ts, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_TIMEDWRLOCK, fn(P, Ts), l, t), ra)
}
unsafe extern "C" fn rwlock_clockwrlock_at(l: P, c: c_int, t: Ts, ra: usize) -> c_int {
    took(l, call!(real::RWLOCK_CLOCKWRLOCK, fn(P, c_int, Ts), l, c, t), ra)
}
unsafe extern "C" fn rwlock_unlock_at(l: P, ra: usize) -> c_int {
    release(&real::RWLOCK_UNLOCK, l, ra)
}
unsafe extern "C" fn spin_lock_at(s: P, ra: usize) -> c_int {
    took(s, call!(real::SPIN_LOCK, fn(P), s), ra)
}
unsafe extern "C" fn spin_trylock_at(s: P, ra: usize) -> c_int {
    took(s, call!(real::SPIN_TRYLOCK, fn(P), s), ra)
}
unsafe extern "C" fn spin_unlock_at(s: P, ra: usize) -> c_int {
    release(&real::SPIN_UNLOCK, s, ra)
}
unsafe extern "C" fn cond_wait_at(c: P, m: P, ra: usize) -> c_int {
    wait(m, ra, || call!(real::COND_WAIT, fn(P, P), c, m))
}
unsafe extern "C" fn cond_timedwait_at(c: P, m: P, t: Ts, ra: usize) -> c_int {
    wait(m, ra, || call!(real::COND_TIMEDWAIT, fn(P, P, Ts), c, m, t))
}
unsafe extern "C" fn cond_clockwait_at(c: P, m: P, k: c_int, t: Ts, ra: usize) -> c_int {
    wait(m, ra, || {
        call!(real::COND_CLOCKWAIT, fn(P, P, c_int, Ts), c, m, k, t)
    })
}
