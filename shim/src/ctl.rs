//! Typed access to jemalloc's `mallctl` namespace for the shim's own use.
//!
//! Rule: names are C string literals; indexed names (`arena.<i>.…`) go
//! through MIBs, never through formatted strings, so nothing allocates.

use core::ffi::{c_void, CStr};
use core::mem::{size_of, MaybeUninit};
use core::ptr::null_mut;

use tikv_jemalloc_sys as jem;

/// Reads a value of type `T` (which must match the control's type).
pub fn read<T: Copy>(name: &CStr) -> Option<T> {
    let mut v = MaybeUninit::<T>::uninit();
    let mut len = size_of::<T>();
    // SAFETY: `v` has room for `len` bytes; jemalloc writes at most that.
    let rc = unsafe { jem::mallctl(name.as_ptr(), v.as_mut_ptr().cast(), &mut len, null_mut(), 0) };
    // SAFETY: rc == 0 means jemalloc wrote exactly size_of::<T>() bytes.
    (rc == 0 && len == size_of::<T>()).then(|| unsafe { v.assume_init() })
}

/// Writes `value`; returns jemalloc's error code (0 on success).
pub fn write<T: Copy>(name: &CStr, mut value: T) -> i32 {
    // SAFETY: `value` is a live `T` of the size passed.
    unsafe {
        jem::mallctl(
            name.as_ptr(),
            null_mut(),
            null_mut(),
            (&mut value as *mut T).cast(),
            size_of::<T>(),
        )
    }
}

/// Runs a control that takes no value (`arena.<i>.purge`, `thread.tcache.flush`).
pub fn call(name: &CStr) -> i32 {
    // SAFETY: no buffers are passed.
    unsafe { jem::mallctl(name.as_ptr(), null_mut(), null_mut(), null_mut(), 0) }
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

    pub fn read<T: Copy>(&self) -> Option<T> {
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
        // SAFETY: rc == 0 means jemalloc wrote the value.
        (rc == 0 && len == size_of::<T>()).then(|| unsafe { v.assume_init() })
    }

    pub fn write<T: Copy>(&self, mut value: T) -> i32 {
        // SAFETY: as `write` above.
        unsafe {
            jem::mallctlbymib(
                self.mib.as_ptr(),
                self.len,
                null_mut(),
                null_mut(),
                (&mut value as *mut T).cast::<c_void>(),
                size_of::<T>(),
            )
        }
    }

    pub fn call(&self) -> i32 {
        // SAFETY: no buffers are passed.
        unsafe { jem::mallctlbymib(self.mib.as_ptr(), self.len, null_mut(), null_mut(), null_mut(), 0) }
    }
}

/// Refreshes jemalloc's statistics snapshot (`epoch`).
pub fn refresh_stats() {
    write(c"epoch", 1u64);
}

/// `MALLCTL_ARENAS_ALL`: the index meaning "every arena".
pub const ARENAS_ALL: usize = 4096;
