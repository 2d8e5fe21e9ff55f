//! The real pthread functions, found with `dlsym(RTLD_NEXT)` (so another
//! interposer after this library keeps its place). A call that comes
//! before they are found resolves its own; a mutex or rwlock call made
//! while a resolution runs (dlsym may allocate, and memscope's jemalloc
//! takes mutexes) uses glibc's `__pthread_*` alias of the same function.

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

/// One real function: its address once found (first: the entry stubs
/// load it from the static's own address), its name, glibc's alias for it
/// (or 0).
#[repr(C)]
pub struct Real {
    addr: AtomicUsize,
    name: &'static CStr,
    alias: fn() -> usize,
}

/// Set while a `dlsym` runs: calls made meanwhile use the aliases.
static RESOLVING: AtomicBool = AtomicBool::new(false);

impl Real {
    const fn new(name: &'static CStr, alias: fn() -> usize) -> Real {
        Real {
            addr: AtomicUsize::new(0),
            name,
            alias,
        }
    }

    /// The function's address if found, else 0.
    #[inline(always)]
    pub fn found(&self) -> usize {
        self.addr.load(Relaxed)
    }

    /// The function's address.
    #[inline(always)]
    pub fn get(&self) -> usize {
        let a = self.addr.load(Relaxed);
        if a != 0 {
            a
        } else {
            self.resolve()
        }
    }

    #[cold]
    #[inline(never)]
    pub fn resolve(&self) -> usize {
        let alias = (self.alias)();
        let busy = RESOLVING.swap(true, Acquire);
        if busy && alias != 0 {
            return alias;
        }
        // SAFETY: a NUL-terminated name; RTLD_NEXT from this library.
        let a = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr() as *const c_char) } as usize;
        if !busy {
            RESOLVING.store(false, Release);
        }
        let a = if a != 0 { a } else { alias };
        if a == 0 {
            // No such function below us: nothing can be called.
            // SAFETY: abort(3) is always safe to call.
            unsafe { libc::abort() }
        }
        self.addr.store(a, Relaxed);
        a
    }
}

/// The entry stubs' call for a function not yet found (a lock call made
/// by an earlier constructor, before this library's own).
pub extern "C" fn resolve(real: &Real) -> usize {
    real.get()
}

fn none() -> usize {
    0
}

extern "C" {
    fn __pthread_mutex_lock(m: *mut c_void) -> i32;
    fn __pthread_mutex_trylock(m: *mut c_void) -> i32;
    fn __pthread_mutex_unlock(m: *mut c_void) -> i32;
    fn __pthread_rwlock_rdlock(l: *mut c_void) -> i32;
    fn __pthread_rwlock_tryrdlock(l: *mut c_void) -> i32;
    fn __pthread_rwlock_wrlock(l: *mut c_void) -> i32;
    fn __pthread_rwlock_trywrlock(l: *mut c_void) -> i32;
    fn __pthread_rwlock_unlock(l: *mut c_void) -> i32;
}

macro_rules! reals {
    ($($name:ident = $sym:literal, $alias:expr;)*) => {
        $(pub static $name: Real = Real::new($sym, $alias);)*
        /// Finds every real function (the library's constructor).
        pub fn resolve_all() {
            $($name.get();)*
        }
    };
}

reals! {
    MUTEX_LOCK = c"pthread_mutex_lock", || __pthread_mutex_lock as *const () as usize;
    MUTEX_TRYLOCK = c"pthread_mutex_trylock", || __pthread_mutex_trylock as *const () as usize;
    MUTEX_TIMEDLOCK = c"pthread_mutex_timedlock", none;
    MUTEX_CLOCKLOCK = c"pthread_mutex_clocklock", none;
    MUTEX_UNLOCK = c"pthread_mutex_unlock", || __pthread_mutex_unlock as *const () as usize;
    RWLOCK_RDLOCK = c"pthread_rwlock_rdlock", || __pthread_rwlock_rdlock as *const () as usize;
    RWLOCK_TRYRDLOCK = c"pthread_rwlock_tryrdlock", || __pthread_rwlock_tryrdlock as *const () as usize;
    RWLOCK_TIMEDRDLOCK = c"pthread_rwlock_timedrdlock", none;
    RWLOCK_CLOCKRDLOCK = c"pthread_rwlock_clockrdlock", none;
    RWLOCK_WRLOCK = c"pthread_rwlock_wrlock", || __pthread_rwlock_wrlock as *const () as usize;
    RWLOCK_TRYWRLOCK = c"pthread_rwlock_trywrlock", || __pthread_rwlock_trywrlock as *const () as usize;
    RWLOCK_TIMEDWRLOCK = c"pthread_rwlock_timedwrlock", none;
    RWLOCK_CLOCKWRLOCK = c"pthread_rwlock_clockwrlock", none;
    RWLOCK_UNLOCK = c"pthread_rwlock_unlock", || __pthread_rwlock_unlock as *const () as usize;
    SPIN_LOCK = c"pthread_spin_lock", none;
    SPIN_TRYLOCK = c"pthread_spin_trylock", none;
    SPIN_UNLOCK = c"pthread_spin_unlock", none;
    COND_WAIT = c"pthread_cond_wait", none;
    COND_TIMEDWAIT = c"pthread_cond_timedwait", none;
    COND_CLOCKWAIT = c"pthread_cond_clockwait", none;
}
