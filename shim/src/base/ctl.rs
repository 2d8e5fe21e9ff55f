//! Typed access to jemalloc's `mallctl` namespace for the shim's own use.
//!
//! Rule: names are C string literals; indexed names (`arena.<i>.…`) go
//! through MIBs, never through formatted strings, so nothing allocates.
//! Values are only the plain types of `Value` (any bytes jemalloc writes
//! make a valid one), and every write returns a `Result` its caller must
//! handle: a failed setting is reported, never dropped.

use core::ffi::{c_uint, c_void, CStr};
use core::mem::{size_of, MaybeUninit};
use core::num::NonZeroI32;
use core::ptr::null_mut;

use tikv_jemalloc_sys as jem;

mod sealed {
    pub trait Sealed {}
}

/// A type a control may be read into or written from: integers, `bool`
/// (jemalloc's C `bool`, 0 or 1) and raw pointers, for which the bytes
/// jemalloc writes always form a valid value.
pub trait Value: Copy + sealed::Sealed {}

macro_rules! values {
    ($($t:ty),*) => { $(impl sealed::Sealed for $t {} impl Value for $t {})* };
}
values!(u32, u64, usize, isize, bool, *mut u64);
const _: () = assert!(size_of::<c_uint>() == size_of::<u32>());

/// A failed `mallctl`: jemalloc's error code (`EINVAL`, `ENOENT`, `EPERM`,
/// `EAGAIN`, `EFAULT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct CtlError(pub NonZeroI32);

impl CtlError {
    pub fn code(self) -> i32 {
        self.0.get()
    }
}

fn result(rc: i32) -> Result<(), CtlError> {
    match NonZeroI32::new(rc) {
        None => Ok(()),
        Some(e) => Err(CtlError(e)),
    }
}

/// Reads a value of type `T` (which must match the control's type).
pub fn read<T: Value>(name: &CStr) -> Option<T> {
    let mut v = MaybeUninit::<T>::uninit();
    let mut len = size_of::<T>();
    // SAFETY: `v` has room for `len` bytes; jemalloc writes at most that.
    let rc = unsafe { jem::mallctl(name.as_ptr(), v.as_mut_ptr().cast(), &mut len, null_mut(), 0) };
    // SAFETY: rc == 0 and the length match mean jemalloc wrote all of a
    // `T`, and any bytes form a valid `Value`.
    (rc == 0 && len == size_of::<T>()).then(|| unsafe { v.assume_init() })
}

/// Writes `value`.
pub fn write<T: Value>(name: &CStr, mut value: T) -> Result<(), CtlError> {
    // SAFETY: `value` is a live `T` of the size passed.
    result(unsafe {
        jem::mallctl(
            name.as_ptr(),
            null_mut(),
            null_mut(),
            (&mut value as *mut T).cast(),
            size_of::<T>(),
        )
    })
}

/// A control name resolved once, with one index slot to fill in
/// (`arena.<i>.dirty_decay_ms` has the index at position 1).
pub struct Mib {
    mib: [usize; 8],
    len: usize,
}

impl Mib {
    pub fn new(name: &CStr) -> Option<Mib> {
        let mut mib = [0usize; 8];
        let mut len = mib.len();
        // SAFETY: `mib` has room for `len` entries.
        let rc = unsafe { jem::mallctlnametomib(name.as_ptr(), mib.as_mut_ptr(), &mut len) };
        (rc == 0).then_some(Mib { mib, len })
    }

    /// Returns a copy with `mib[pos] = index`.
    pub fn at(&self, pos: usize, index: usize) -> Mib {
        let mut m = Mib {
            mib: self.mib,
            len: self.len,
        };
        m.mib[pos] = index;
        m
    }

    pub fn read<T: Value>(&self) -> Option<T> {
        let mut v = MaybeUninit::<T>::uninit();
        let mut len = size_of::<T>();
        // SAFETY: as `read` above.
        let rc = unsafe {
            jem::mallctlbymib(
                self.mib.as_ptr(),
                self.len,
                v.as_mut_ptr().cast(),
                &mut len,
                null_mut(),
                0,
            )
        };
        // SAFETY: as `read` above.
        (rc == 0 && len == size_of::<T>()).then(|| unsafe { v.assume_init() })
    }

    pub fn write<T: Value>(&self, mut value: T) -> Result<(), CtlError> {
        // SAFETY: as `write` above.
        result(unsafe {
            jem::mallctlbymib(
                self.mib.as_ptr(),
                self.len,
                null_mut(),
                null_mut(),
                (&mut value as *mut T).cast::<c_void>(),
                size_of::<T>(),
            )
        })
    }

    /// Runs a control that takes no value (`arena.<i>.purge`).
    pub fn call(&self) -> Result<(), CtlError> {
        // SAFETY: no buffers are passed.
        result(unsafe {
            jem::mallctlbymib(self.mib.as_ptr(), self.len, null_mut(), null_mut(), null_mut(), 0)
        })
    }
}

/// Refreshes jemalloc's statistics snapshot (`epoch`). A failure leaves
/// the previous snapshot, which callers read as it is.
pub fn refresh_stats() -> Result<(), CtlError> {
    write(c"epoch", 1u64)
}

/// `MALLCTL_ARENAS_ALL`: the index meaning "every arena".
pub const ARENAS_ALL: usize = 4096;
