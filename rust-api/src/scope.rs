//! Scopes: per-thread allocation contexts, entered as guards.

use core::marker::PhantomData;
use core::ops::{BitOr, BitOrAssign};
use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::backend;

/// Scope flags, as `MEMSCOPE_*` in `memscope.h`.
///
/// ```
/// use memscope::Flags;
/// let f = Flags::NORECLAIM | Flags::NOWARN;
/// assert!(f.contains(Flags::NOWARN));
/// assert_eq!(f.bits(), 0x03);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flags(u32);

impl Flags {
    /// No scope.
    pub const NONE: Flags = Flags(0);
    /// Nothing allocated or freed may enter reclaim: no system call, no
    /// lock wait, no page fault on fresh memory, no purge; served from
    /// pre-faulted pool memory, NULL (an allocation error) at once when the
    /// pool is empty.
    pub const NORECLAIM: Flags = Flags(0x01);
    /// Failures print no diagnostic (they are still counted).
    pub const NOWARN: Flags = Flags(0x02);
    /// A possible request never fails: retried through reclaimers and the
    /// reserve pool.
    pub const NOFAIL: Flags = Flags(0x04);
    /// Reclaimers that take filesystem locks do not run.
    pub const NOFS: Flags = Flags(0x08);
    /// Reclaimers that do I/O (or take filesystem locks) do not run.
    pub const NOIO: Flags = Flags(0x10);

    /// The `MEMSCOPE_*` bits.
    ///
    /// ```
    /// assert_eq!(memscope::Flags::NOFAIL.bits(), 0x04);
    /// ```
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Flags from `MEMSCOPE_*` bits; unknown bits are dropped.
    ///
    /// ```
    /// use memscope::Flags;
    /// assert_eq!(Flags::from_bits(0x01 | 0x100), Flags::NORECLAIM);
    /// ```
    pub const fn from_bits(bits: u32) -> Flags {
        Flags(bits & 0x1f)
    }

    /// True if every flag of `other` is set in `self`.
    ///
    /// ```
    /// use memscope::Flags;
    /// assert!((Flags::NOFS | Flags::NOIO).contains(Flags::NOIO));
    /// assert!(!Flags::NOFS.contains(Flags::NOFS | Flags::NOIO));
    /// ```
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

/// The calling thread's flags.
///
/// ```
/// assert_eq!(memscope::current(), memscope::Flags::NONE);
/// let _s = memscope::nofs();
/// assert_eq!(memscope::current(), memscope::Flags::NOFS);
/// ```
pub fn current() -> Flags {
    Flags::from_bits(backend::current())
}

/// A scope on the calling thread, left when dropped. Scopes nest; leave
/// them in reverse order of entry (as locals do).
///
/// Not `Send` (nor `Sync`): a scope is a property of the thread that
/// entered it, like the kernel's `memalloc_*_save()`. A guard held across
/// an `.await` could be resumed, and dropped, on another worker thread:
/// the scope would stay on the first thread for good, and the second
/// would leave a scope it never entered. The compiler refuses such a
/// future as `Send`; enter scopes inside synchronous sections instead.
///
/// ```compile_fail
/// fn needs_send<T: Send>(_: T) {}
/// needs_send(memscope::noreclaim());
/// ```
#[must_use = "the scope ends when this guard is dropped"]
pub struct Scope {
    saved: u32,
    _thread_bound: PhantomData<*const ()>,
}

impl Scope {
    /// Enters a scope: ORs `flags` into the thread's context.
    ///
    /// ```
    /// use memscope::{Flags, Scope};
    /// let s = Scope::enter(Flags::NOFAIL | Flags::NOIO);
    /// assert!(memscope::current().contains(Flags::NOFAIL));
    /// drop(s);
    /// assert_eq!(memscope::current(), Flags::NONE);
    /// ```
    pub fn enter(flags: Flags) -> Scope {
        if flags.0 & (Flags::NORECLAIM.0 | Flags::NOFAIL.0) != 0 {
            check_routed_once();
        }
        Scope {
            saved: backend::push(flags.0),
            _thread_bound: PhantomData,
        }
    }

    /// The flags that were in force before this scope.
    ///
    /// ```
    /// let outer = memscope::nofs();
    /// let inner = memscope::noio();
    /// assert_eq!(inner.saved(), memscope::Flags::NOFS);
    /// # drop(inner); drop(outer);
    /// ```
    pub fn saved(&self) -> Flags {
        Flags::from_bits(self.saved)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        backend::pop(self.saved)
    }
}

/// Enters NORECLAIM (see [`Flags::NORECLAIM`]). Warm a thread's scope once
/// before it matters: the first entry on a thread sets it up (and the
/// process's first makes the pool) with system calls.
///
/// ```
/// let node = {
///     let _s = memscope::noreclaim();
///     Box::new([0u8; 256])
/// };
/// # drop(node);
/// ```
pub fn noreclaim() -> Scope {
    Scope::enter(Flags::NORECLAIM)
}

/// Enters NOFAIL (see [`Flags::NOFAIL`]).
///
/// ```
/// let _s = memscope::nofail();
/// let v = vec![1u8; 1 << 20];
/// # drop(v);
/// ```
pub fn nofail() -> Scope {
    Scope::enter(Flags::NOFAIL)
}

/// Enters NOWARN (see [`Flags::NOWARN`]).
///
/// ```
/// let _s = memscope::nowarn();
/// assert!(memscope::current().contains(memscope::Flags::NOWARN));
/// ```
pub fn nowarn() -> Scope {
    Scope::enter(Flags::NOWARN)
}

/// Enters NOFS (see [`Flags::NOFS`]).
///
/// ```
/// let _s = memscope::nofs();
/// assert!(memscope::current().contains(memscope::Flags::NOFS));
/// ```
pub fn nofs() -> Scope {
    Scope::enter(Flags::NOFS)
}

/// Enters NOIO (see [`Flags::NOIO`]).
///
/// ```
/// let _s = memscope::noio();
/// assert!(memscope::current().contains(memscope::Flags::NOIO));
/// ```
pub fn noio() -> Scope {
    Scope::enter(Flags::NOIO)
}

/// Runs `f` inside a scope.
///
/// ```
/// let v = memscope::with(memscope::Flags::NOFAIL, || vec![0u64; 1024]);
/// assert_eq!(v.len(), 1024);
/// ```
pub fn with<R>(flags: Flags, f: impl FnOnce() -> R) -> R {
    let _scope = Scope::enter(flags);
    f()
}

/// Asks memscope, at the first NORECLAIM or NOFAIL scope of the process
/// (outside it), whether Rust's allocations reach it at all; if they do
/// not (another `#[global_allocator]`, or the system allocator with no
/// libmemscope.so loaded), memscope says so once on stderr and counts a
/// `scopes_bypassed` event. Asked again later if it could not tell (the
/// thread was already in NORECLAIM).
pub(crate) fn check_routed_once() {
    static CHECKED: AtomicBool = AtomicBool::new(false);
    if CHECKED.load(Relaxed) {
        return;
    }
    unsafe extern "C" fn probe() {
        drop(core::hint::black_box(Box::new([0u8; 64])));
    }
    if backend::check_routed(probe) >= 0 {
        CHECKED.store(true, Relaxed);
    }
}
