//! Heap-profile requests from outside the process (`memscope-stat
//! profile`), through the stats segment: the reader stores a request
//! number in `Header::profile_request`; the next thread here writes a
//! jemalloc heap profile (`prof.dump`) to `<segment path>.<number>.heap`
//! and publishes the number in `profile_done`, with `profile_status`.
//!
//! Who serves: the maintenance thread every round, and any thread's
//! sampled call outside scopes (`thread::fast_sample`, one call in
//! `MEMSCOPE_STATS_SAMPLE`), whichever comes first; a claim makes it one.
//! Never a thread inside a scope: a dump takes jemalloc's profiling locks
//! and writes a file. No signal is needed, so a process that handles
//! signals its own way is served all the same.

use core::ffi::{c_char, c_void};
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::*};

use memscope_abi as abi;

use super::segment;
use crate::os;

/// The highest request a thread has claimed.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// Serves a pending request, if any: two loads when there is none.
#[inline]
pub fn poll() {
    let Some(h) = segment::header() else { return };
    let req = h.profile_request.load(Relaxed);
    if req > h.profile_done.load(Relaxed) {
        serve(h, req);
    }
}

#[cold]
#[inline(never)]
fn serve(h: &abi::Header, req: u64) {
    let claimed = CLAIMED.load(Relaxed);
    if req <= claimed || CLAIMED.compare_exchange(claimed, req, AcqRel, Relaxed).is_err() {
        return;
    }
    let status = dump(req);
    h.profile_status.store(status, Relaxed);
    h.profile_done.store(req, Release);
}

/// Writes the profile; 0 or an errno.
fn dump(req: u64) -> u32 {
    if crate::base::ctl::read::<bool>(c"opt.prof") != Some(true) {
        return abi::PROFILE_OFF;
    }
    let Some(seg) = segment::path() else {
        return libc::ENOENT as u32;
    };
    let mut path = PathBuf::default();
    if path.write_str(seg.to_str().unwrap_or("")).is_err() || write!(path, ".{req}.heap\0").is_err() {
        return libc::ENAMETOOLONG as u32;
    }
    let name: *const c_char = path.0.as_ptr().cast();
    // SAFETY: `prof.dump` takes a `const char *` to a NUL-terminated path,
    // which `path` holds for the call.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"prof.dump".as_ptr(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            &name as *const *const c_char as *mut c_void,
            core::mem::size_of::<*const c_char>(),
        )
    };
    if rc != 0 {
        return rc as u32;
    }
    // jemalloc creates it 0644: a heap profile is the owner's business,
    // as the segment is.
    if let Ok(p) = core::ffi::CStr::from_bytes_until_nul(&path.0[..path.1]) {
        let _ = os::chmod(p, 0o600);
    }
    0
}

/// A path built on the stack (no allocation here).
struct PathBuf([u8; crate::base::config::PATH_MAX_LEN + 64], usize);

impl Default for PathBuf {
    fn default() -> Self {
        PathBuf([0; crate::base::config::PATH_MAX_LEN + 64], 0)
    }
}

impl Write for PathBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.1 + s.len();
        if end > self.0.len() {
            return Err(core::fmt::Error);
        }
        self.0[self.1..end].copy_from_slice(s.as_bytes());
        self.1 = end;
        Ok(())
    }
}
