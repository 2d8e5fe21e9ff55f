//! Reclaimers: closures that free memory the program can do without.

use core::ffi::{c_uint, c_void};
use std::cell::Cell;
use std::ffi::CString;

use crate::backend;

/// What a reclaimer may do, so that scopes can keep it out:
/// [`Needs::FS`] ones do not run under NOFS or NOIO, [`Needs::IO`] ones
/// not under NOIO.
///
/// ```
/// use memscope::{Needs, Reclaimer};
/// // Writes dirty pages back before dropping them: keep it out of I/O paths.
/// let r = Reclaimer::register("page cache", Needs::FS | Needs::IO, |_want| 0);
/// # drop(r);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Needs(u32);

impl Needs {
    /// Takes no filesystem lock and does no I/O (frees memory only).
    pub const NONE: Needs = Needs(0);
    /// May take filesystem-level locks (`MEMSCOPE_RECLAIM_FS`).
    pub const FS: Needs = Needs(0x1);
    /// May do I/O (`MEMSCOPE_RECLAIM_IO`).
    pub const IO: Needs = Needs(0x2);
}

impl core::ops::BitOr for Needs {
    type Output = Needs;
    fn bitor(self, rhs: Needs) -> Needs {
        Needs(self.0 | rhs.0)
    }
}

/// A registered reclaimer, unregistered when dropped. It runs on a thread
/// whose NOFAIL allocation failed (before the retry; not in NORECLAIM, nor
/// where the thread's NOFS/NOIO exclude its [`Needs`]) and on memscope's
/// maintenance thread when RSS passes `MEMSCOPE_SOFT_LIMIT`: on any
/// thread, possibly on several at once, hence `Fn + Send + Sync`. It is
/// asked to free about `want` bytes and returns how many it freed; its
/// own allocations may use the NOFAIL reserve and never re-enter reclaim.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// let cache: Arc<Mutex<Vec<Vec<u8>>>> = Arc::new(Mutex::new(vec![vec![0; 4096]; 16]));
/// let c = Arc::clone(&cache);
/// let r = memscope::Reclaimer::register("cache", memscope::Needs::NONE, move |want| {
///     let mut cache = c.lock().unwrap();
///     let mut freed = 0;
///     while freed < want {
///         match cache.pop() {
///             Some(block) => freed += block.len(),
///             None => break,
///         }
///     }
///     freed
/// })
/// .expect("64 reclaimers at most");
/// drop(r); // unregistered; returns once no thread runs it
/// ```
pub struct Reclaimer {
    id: i32,
    closure: *mut c_void,
    drop_closure: unsafe fn(*mut c_void),
}

// SAFETY: the closure is `Send + Sync`; the handle only unregisters it.
unsafe impl Send for Reclaimer {}
// SAFETY: as above; `&Reclaimer` allows nothing.
unsafe impl Sync for Reclaimer {}

thread_local! {
    /// The reclaimer this thread is running (its closure), or null.
    static RUNNING: Cell<*mut c_void> = const { Cell::new(core::ptr::null_mut()) };
}

impl Reclaimer {
    /// Registers `f`. `name` (up to 31 bytes, cut at a NUL) shows in
    /// `memscope-stat show`. `None` if 64 reclaimers are registered.
    ///
    /// ```
    /// let r = memscope::Reclaimer::register("nothing", memscope::Needs::NONE, |_| 0);
    /// assert!(r.is_some());
    /// ```
    pub fn register<F>(name: &str, needs: Needs, f: F) -> Option<Reclaimer>
    where
        F: Fn(usize) -> usize + Send + Sync + 'static,
    {
        let name = CString::new(name.split('\0').next().unwrap_or_default()).unwrap_or_default();
        let closure = Box::into_raw(Box::new(f)).cast::<c_void>();
        // SAFETY: `trampoline::<F>` is called with the boxed `F` until the
        // id is unregistered, and the box lives until then (`Drop`).
        let id = unsafe { backend::register(name.as_ptr(), trampoline::<F>, closure, needs.0 as c_uint) };
        if id < 1 {
            // SAFETY: never registered: this is the only owner.
            unsafe { drop_box::<F>(closure) };
            return None;
        }
        Some(Reclaimer {
            id,
            closure,
            drop_closure: drop_box::<F>,
        })
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        // Returns once no other thread runs the callback.
        backend::unregister(self.id);
        // From inside its own callback the closure is still running on
        // this thread: leaked rather than freed under it.
        if RUNNING.with(|r| r.get()) != self.closure {
            // SAFETY: unregistered and not running: the last reference.
            unsafe { (self.drop_closure)(self.closure) }
        }
    }
}

unsafe fn drop_box<F>(p: *mut c_void) {
    // SAFETY: `p` came from `Box::<F>::into_raw` in `register`.
    drop(unsafe { Box::from_raw(p.cast::<F>()) });
}

/// The C callback: runs the closure; a panic frees nothing (it must not
/// unwind into memscope, which is C-called code).
unsafe extern "C" fn trampoline<F>(want: usize, arg: *mut c_void) -> usize
where
    F: Fn(usize) -> usize + Send + Sync + 'static,
{
    // SAFETY: `arg` is the live boxed `F` (see `register`).
    let f = unsafe { &*arg.cast::<F>() };
    let outer = RUNNING.with(|r| r.replace(arg));
    let freed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(want))).unwrap_or(0);
    RUNNING.with(|r| r.set(outer));
    freed
}
