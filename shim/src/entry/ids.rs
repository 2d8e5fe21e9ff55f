//! Changes of user id (`setuid` and its kin, exported in `exports.rs`):
//! the stats segment follows the process's effective user.
//!
//! A daemon that starts as root and drops privileges (`memcached -u
//! nobody`, anything that calls `setuid`) would otherwise leave its
//! segment behind: the segment is created as root, and the unlink at exit
//! runs as the new user, which a sticky directory (`/dev/shm`) refuses.
//! So before the real call the file is handed to the user the process is
//! about to become (possible only while it is still privileged), and
//! handed back if the call fails. Group ids do not matter for either.
//!
//! The real functions are found with `dlsym(RTLD_NEXT)` on first use,
//! outside every allocator path (`dlsym` may allocate).

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicPtr, Ordering::*};

use crate::stats::segment;

type Uid = libc::uid_t;
/// `(uid_t)-1`: "leave this id as it is".
const UNCHANGED: Uid = Uid::MAX;

fn next_symbol(cache: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let p = cache.load(Acquire);
    if !p.is_null() {
        return p;
    }
    // SAFETY: a NUL-terminated name; RTLD_NEXT finds the definition after
    // this library's (libc's).
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    cache.store(p, Release);
    p
}

/// Runs `call` (the real function) with the segment handed to `euid`
/// first, and back if `call` fails.
fn with_owner(euid: Uid, call: impl FnOnce() -> c_int) -> c_int {
    let before = if euid == UNCHANGED {
        None
    } else {
        segment::follow_owner(euid)
    };
    let rc = call();
    if rc != 0 {
        if let Some(uid) = before {
            // Keep the failed call's errno for the caller.
            let e = crate::base::log::errno();
            segment::restore_owner(uid);
            crate::base::log::set_errno(e);
        }
    }
    rc
}

fn no_symbol() -> c_int {
    crate::base::log::set_errno(libc::ENOSYS);
    -1
}

macro_rules! real {
    ($cache:ident, $name:literal, $ty:ty) => {{
        static $cache: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
        let p = next_symbol(&$cache, $name);
        if p.is_null() {
            None
        } else {
            // SAFETY: libc's function of that name has this signature.
            Some(unsafe { core::mem::transmute::<*mut c_void, $ty>(p) })
        }
    }};
}

pub fn setuid(uid: Uid) -> c_int {
    match real!(SETUID, c"setuid", unsafe extern "C" fn(Uid) -> c_int) {
        // SAFETY: libc's setuid.
        Some(f) => with_owner(uid, || unsafe { f(uid) }),
        None => no_symbol(),
    }
}

pub fn seteuid(euid: Uid) -> c_int {
    match real!(SETEUID, c"seteuid", unsafe extern "C" fn(Uid) -> c_int) {
        // SAFETY: libc's seteuid.
        Some(f) => with_owner(euid, || unsafe { f(euid) }),
        None => no_symbol(),
    }
}

pub fn setreuid(ruid: Uid, euid: Uid) -> c_int {
    match real!(SETREUID, c"setreuid", unsafe extern "C" fn(Uid, Uid) -> c_int) {
        // SAFETY: libc's setreuid.
        Some(f) => with_owner(euid, || unsafe { f(ruid, euid) }),
        None => no_symbol(),
    }
}

pub fn setresuid(ruid: Uid, euid: Uid, suid: Uid) -> c_int {
    match real!(
        SETRESUID,
        c"setresuid",
        unsafe extern "C" fn(Uid, Uid, Uid) -> c_int
    ) {
        // SAFETY: libc's setresuid.
        Some(f) => with_owner(euid, || unsafe { f(ruid, euid, suid) }),
        None => no_symbol(),
    }
}
