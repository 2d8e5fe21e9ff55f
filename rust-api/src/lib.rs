//! Allocation context scopes for Rust programs running under memscope.
//!
//! ```no_run
//! use memscope_rs::{Flags, Scope};
//! let node = {
//!     let _g = Scope::enter(Flags::NORECLAIM);
//!     Box::new([0u8; 256]) // from the pre-faulted pool, no syscalls
//! };
//! ```
//!
//! The crate links nothing: it finds `memscope_push`/`memscope_pop` in the
//! running process with `dlsym` the first time a scope is entered. A
//! program whose allocator is the system `malloc` gets real scopes when
//! started with `LD_PRELOAD=libmemscope.so` and runs unchanged (scopes are
//! no-ops) without it. Do not combine with a Rust `#[global_allocator]`
//! that bypasses `malloc`: scopes act on the preloaded `malloc` only.
//!
//! Depend on it as `memscope = { package = "memscope-rs", ... }` to write
//! `memscope::Scope`.

use core::ffi::{c_uint, c_void};
use core::marker::PhantomData;
use core::ops::{BitOr, BitOrAssign};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Scope flags, as `MEMSCOPE_*` in `memscope.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Nothing allocated or freed may enter reclaim (no mmap family calls,
    /// no page faults on fresh memory, no purging); NULL at once when the
    /// pool is empty.
    pub const NORECLAIM: Flags = Flags(0x01);
    /// Failures print no diagnostic (they are still counted).
    pub const NOWARN: Flags = Flags(0x02);
    /// A possible request never fails.
    pub const NOFAIL: Flags = Flags(0x04);
    /// Reclaimers that take filesystem locks do not run.
    pub const NOFS: Flags = Flags(0x08);
    /// Reclaimers that do I/O (or take filesystem locks) do not run.
    pub const NOIO: Flags = Flags(0x10);

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn from_bits(bits: u32) -> Flags {
        Flags(bits & 0x1f)
    }

    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

type PushFn = unsafe extern "C" fn(c_uint) -> c_uint;
type PopFn = unsafe extern "C" fn(c_uint);
type CurrentFn = unsafe extern "C" fn() -> c_uint;

struct Api {
    push: PushFn,
    pop: PopFn,
    current: CurrentFn,
}

const UNRESOLVED: u8 = 0;
const ABSENT: u8 = 1;
const PRESENT: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNRESOLVED);
static PUSH: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static POP: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static CURRENT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// The library's functions, resolved once (a race resolves twice, to the
/// same values).
fn api() -> Option<Api> {
    let mut state = STATE.load(Ordering::Acquire);
    if state == UNRESOLVED {
        state = resolve();
    }
    if state != PRESENT {
        return None;
    }
    // SAFETY: PRESENT is published only after all three pointers were
    // stored, each the address of the C function with that signature.
    unsafe {
        Some(Api {
            push: core::mem::transmute::<*mut c_void, PushFn>(PUSH.load(Ordering::Relaxed)),
            pop: core::mem::transmute::<*mut c_void, PopFn>(POP.load(Ordering::Relaxed)),
            current: core::mem::transmute::<*mut c_void, CurrentFn>(CURRENT.load(Ordering::Relaxed)),
        })
    }
}

#[cold]
fn resolve() -> u8 {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names.
    let (push, pop, current) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"memscope_push".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"memscope_pop".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"memscope_current".as_ptr()),
        )
    };
    let state = if push.is_null() || pop.is_null() || current.is_null() {
        ABSENT
    } else {
        PUSH.store(push, Ordering::Relaxed);
        POP.store(pop, Ordering::Relaxed);
        CURRENT.store(current, Ordering::Relaxed);
        PRESENT
    };
    STATE.store(state, Ordering::Release);
    state
}

/// True if libmemscope.so is loaded in this process.
pub fn is_loaded() -> bool {
    api().is_some()
}

/// The calling thread's flags (`NONE` without the library).
pub fn current() -> Flags {
    // SAFETY: a resolved memscope_current, callable from any thread.
    api().map_or(Flags::NONE, |a| Flags::from_bits(unsafe { (a.current)() }))
}

/// A scope on the calling thread, left when dropped. Scopes nest; drop
/// them in reverse order of entry (as with any guard held in a local). Not
/// `Send`: a scope belongs to the thread that entered it.
#[must_use = "the scope ends when this guard is dropped"]
pub struct Scope {
    saved: u32,
    _thread_bound: PhantomData<*const ()>,
}

impl Scope {
    /// Enters a scope: ORs `flags` into the thread's context.
    pub fn enter(flags: Flags) -> Scope {
        // SAFETY: a resolved memscope_push; any flag value is accepted.
        let saved = api().map_or(0, |a| unsafe { (a.push)(flags.0) });
        Scope {
            saved,
            _thread_bound: PhantomData,
        }
    }

    /// The flags that were in force before this scope.
    pub fn saved(&self) -> Flags {
        Flags::from_bits(self.saved)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(a) = api() {
            // SAFETY: restores the value push returned, on the same thread.
            unsafe { (a.pop)(self.saved) }
        }
    }
}

/// Runs `f` inside a scope.
pub fn with<R>(flags: Flags, f: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(flags);
    f()
}
