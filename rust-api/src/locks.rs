//! Locks that hold NORECLAIM while they are held: any `lock_api` raw lock
//! (parking_lot's, spin's, your own) wrapped so that a thread holding it
//! allocates as inside `memscope::noreclaim()`.
//!
//! Rust's `std::sync::Mutex` and `parking_lot` do not go through pthread
//! (they are futex-based), so an interposer of the pthread lock calls
//! cannot see them; the wrapper is how a Rust program says "nothing I
//! allocate under this lock may enter reclaim" once, at the lock's type,
//! instead of at every critical section.
//!
//! A thread's scoped locks share one scope: the first one it takes enters
//! NORECLAIM, the last one it releases leaves it, in whatever order they
//! are released. The lock is taken before the scope is entered and released
//! after the scope is left, so that waiting for it (a futex wait, a
//! syscall) is never inside the scope. A scope entered while holding a
//! scoped lock is left before that lock is released, as scopes nest.

use core::cell::Cell;

use lock_api::{GuardNoSend, RawMutex, RawMutexFair, RawMutexTimed, RawRwLock, RawRwLockTimed};

use crate::backend;

thread_local! {
    /// The scoped locks this thread holds, and what the scope's push at
    /// the first of them returned (for its pop at the last).
    static HELD: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// A scoped lock was taken.
fn taken() {
    HELD.with(|h| {
        let (n, saved) = h.get();
        if n == 0 {
            crate::scope::check_routed_once();
            h.set((1, backend::push(crate::Flags::NORECLAIM.bits())));
        } else {
            h.set((n.saturating_add(1), saved));
        }
    });
}

/// A scoped lock's attempt: taken if `got`.
fn taken_if(got: bool) -> bool {
    if got {
        taken();
    }
    got
}

/// A scoped lock is about to be released.
fn releasing() {
    HELD.with(|h| match h.get() {
        (0, _) => {}
        (1, saved) => {
            h.set((0, 0));
            backend::pop(saved);
        }
        (n, saved) => h.set((n - 1, saved)),
    });
}

/// A `lock_api` raw mutex that holds NORECLAIM while locked.
///
/// ```
/// type Mutex<T> = lock_api::Mutex<memscope::NoReclaimRawMutex<parking_lot::RawMutex>, T>;
/// let m = Mutex::new(Vec::<u8>::new());
/// {
///     let mut v = m.lock();
///     assert!(memscope::current().contains(memscope::Flags::NORECLAIM));
///     v.push(1); // from the pool: no syscall, no purge, no page fault
/// }
/// assert_eq!(memscope::current(), memscope::Flags::NONE);
/// ```
///
/// Its guard is not `Send`, as a scope is not: the scope belongs to the
/// thread that took the lock.
///
/// ```compile_fail
/// type Mutex<T> = lock_api::Mutex<memscope::NoReclaimRawMutex<parking_lot::RawMutex>, T>;
/// fn needs_send<T: Send>(_: T) {}
/// let m = Mutex::new(0u32);
/// needs_send(m.lock());
/// ```
pub struct NoReclaimRawMutex<R>(R);

// SAFETY: the lock's exclusion is the wrapped lock's, unchanged; the
// scope only follows it on the thread that holds it.
unsafe impl<R: RawMutex> RawMutex for NoReclaimRawMutex<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = NoReclaimRawMutex(R::INIT);
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        self.0.lock();
        taken();
    }

    fn try_lock(&self) -> bool {
        taken_if(self.0.try_lock())
    }

    unsafe fn unlock(&self) {
        releasing();
        // SAFETY: the caller holds the lock (this method's contract).
        unsafe { self.0.unlock() }
    }

    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

// SAFETY: as `RawMutex` above; the fair release is the wrapped lock's.
unsafe impl<R: RawMutexFair> RawMutexFair for NoReclaimRawMutex<R> {
    unsafe fn unlock_fair(&self) {
        releasing();
        // SAFETY: the caller holds the lock (this method's contract).
        unsafe { self.0.unlock_fair() }
    }
}

// SAFETY: as `RawMutex` above; the timeouts are the wrapped lock's.
unsafe impl<R: RawMutexTimed> RawMutexTimed for NoReclaimRawMutex<R> {
    type Duration = R::Duration;
    type Instant = R::Instant;

    fn try_lock_for(&self, timeout: Self::Duration) -> bool {
        taken_if(self.0.try_lock_for(timeout))
    }

    fn try_lock_until(&self, timeout: Self::Instant) -> bool {
        taken_if(self.0.try_lock_until(timeout))
    }
}

/// A `lock_api` raw reader-writer lock that holds NORECLAIM while held,
/// shared or exclusive.
///
/// ```
/// type RwLock<T> = lock_api::RwLock<memscope::NoReclaimRawRwLock<parking_lot::RawRwLock>, T>;
/// let l = RwLock::new(0u64);
/// {
///     let _r = l.read();
///     assert!(memscope::current().contains(memscope::Flags::NORECLAIM));
/// }
/// *l.write() += 1;
/// assert_eq!(memscope::current(), memscope::Flags::NONE);
/// ```
pub struct NoReclaimRawRwLock<R>(R);

// SAFETY: as `NoReclaimRawMutex`: the wrapped lock's exclusion, unchanged.
unsafe impl<R: RawRwLock> RawRwLock for NoReclaimRawRwLock<R> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = NoReclaimRawRwLock(R::INIT);
    type GuardMarker = GuardNoSend;

    fn lock_shared(&self) {
        self.0.lock_shared();
        taken();
    }

    fn try_lock_shared(&self) -> bool {
        taken_if(self.0.try_lock_shared())
    }

    unsafe fn unlock_shared(&self) {
        releasing();
        // SAFETY: the caller holds a shared lock (this method's contract).
        unsafe { self.0.unlock_shared() }
    }

    fn lock_exclusive(&self) {
        self.0.lock_exclusive();
        taken();
    }

    fn try_lock_exclusive(&self) -> bool {
        taken_if(self.0.try_lock_exclusive())
    }

    unsafe fn unlock_exclusive(&self) {
        releasing();
        // SAFETY: the caller holds the exclusive lock (this method's contract).
        unsafe { self.0.unlock_exclusive() }
    }

    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }

    fn is_locked_exclusive(&self) -> bool {
        self.0.is_locked_exclusive()
    }
}

// SAFETY: as `RawRwLock` above; the timeouts are the wrapped lock's.
unsafe impl<R: RawRwLockTimed> RawRwLockTimed for NoReclaimRawRwLock<R> {
    type Duration = R::Duration;
    type Instant = R::Instant;

    fn try_lock_shared_for(&self, timeout: Self::Duration) -> bool {
        taken_if(self.0.try_lock_shared_for(timeout))
    }

    fn try_lock_shared_until(&self, timeout: Self::Instant) -> bool {
        taken_if(self.0.try_lock_shared_until(timeout))
    }

    fn try_lock_exclusive_for(&self, timeout: Self::Duration) -> bool {
        taken_if(self.0.try_lock_exclusive_for(timeout))
    }

    fn try_lock_exclusive_until(&self, timeout: Self::Instant) -> bool {
        taken_if(self.0.try_lock_exclusive_until(timeout))
    }
}

/// `lock_api::Mutex` over `R` (e.g. `parking_lot::RawMutex`), holding
/// NORECLAIM while locked.
pub type NoReclaimMutex<R, T> = lock_api::Mutex<NoReclaimRawMutex<R>, T>;

/// `lock_api::RwLock` over `R` (e.g. `parking_lot::RawRwLock`), holding
/// NORECLAIM while held.
pub type NoReclaimRwLock<R, T> = lock_api::RwLock<NoReclaimRawRwLock<R>, T>;
