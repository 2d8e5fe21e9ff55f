//! The `memscope_*` C API (`ffi-include/memscope.h`).
//!
//! Rule: every entry point is total: any argument value is accepted,
//! nothing panics, nothing unwinds.

use core::ffi::c_uint;

use crate::scope;

/// # Safety
/// None: callable from any thread, including signal handlers once the
/// thread has pushed NORECLAIM before.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn memscope_push(flags: c_uint) -> c_uint {
    scope::push(flags)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn memscope_pop(saved: c_uint) {
    scope::pop(saved)
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn memscope_current() -> c_uint {
    scope::current()
}

/// `MAJOR << 16 | MINOR << 8 | PATCH`, as `MEMSCOPE_VERSION` in the header.
#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn memscope_version() -> c_uint {
    VERSION
}

pub const VERSION: c_uint = (parse(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
    | (parse(env!("CARGO_PKG_VERSION_MINOR")) << 8)
    | parse(env!("CARGO_PKG_VERSION_PATCH"));

const fn parse(s: &str) -> c_uint {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as c_uint;
        i += 1;
    }
    v
}
