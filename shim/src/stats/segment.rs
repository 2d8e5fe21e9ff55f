//! The stats segment file: created once per process (again in a forked
//! child), mapped shared, removed at exit.
//!
//! Safety of the path: the file is created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//! and mode 0600, so an existing file or symlink at the name is never
//! opened for writing or followed. On a clash memscope looks at what is
//! there without trusting it: a regular file of the same owner that no
//! live process holds (its writer exited, or this very process ran `exec`)
//! is removed and the name reused; anything else is left alone and the
//! next name is tried (`memscope.<pid>.1` ... `.7`). If none works, stats
//! are off for the process, with one warning.
//!
//! Liveness: the writer holds a shared `flock` on the file for its whole
//! life (the descriptor is close-on-exec), so readers and `memscope-stat
//! gc` can tell a live segment from a stale one without trusting its pid.
//!
//! Rule: nothing here allocates; this runs inside the first `malloc`.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering::*};

use memscope_abi as abi;

use crate::base::config::CONFIG;
use crate::base::log;
use crate::os;

static BASE: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
static FD: AtomicI32 = AtomicI32::new(-1);

const PATH_CAP: usize = crate::base::config::PATH_MAX_LEN + 32;

/// The segment's path, kept for the unlink at exit.
struct PathCell(core::cell::UnsafeCell<[u8; PATH_CAP]>);
// SAFETY: written only by `create`, which runs once per process image
// (global init, or the single thread of a fresh fork child), before BASE
// is published; read after.
unsafe impl Sync for PathCell {}
static PATH: PathCell = PathCell(core::cell::UnsafeCell::new([0; PATH_CAP]));

/// The mapped header, if stats are on and the segment exists.
#[inline]
pub fn header() -> Option<&'static abi::Header> {
    let p = BASE.load(Acquire);
    // SAFETY: a published BASE maps SEGMENT_SIZE bytes for the rest of
    // the process's life (never unmapped, except by a fork child for the
    // parent's mapping before it publishes its own).
    (!p.is_null()).then(|| unsafe { &*(p as *const abi::Header) })
}

/// The segment's path, if it exists.
pub fn path() -> Option<&'static core::ffi::CStr> {
    header()?;
    // SAFETY: PATH was written before BASE was published, never after.
    let path = unsafe { &*PATH.0.get() };
    core::ffi::CStr::from_bytes_until_nul(path).ok()
}

/// Slot `i` of the mapped segment.
#[inline]
pub fn slot(h: &'static abi::Header, i: usize) -> &'static abi::Slot {
    debug_assert!(i < abi::SLOT_TOTAL);
    // SAFETY: the mapping holds SLOT_TOTAL slots after the header.
    unsafe {
        &*((h as *const abi::Header as *const u8).add(abi::HEADER_SIZE + i * abi::SLOT_SIZE)
            as *const abi::Slot)
    }
}

/// A path in a fixed buffer: `<dir>/memscope.<pid>[.<n>]`, NUL-terminated.
struct SegPath {
    buf: [u8; PATH_CAP],
    len: usize,
}

impl core::fmt::Write for SegPath {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let b = s.as_bytes();
        if self.len + b.len() + 1 > PATH_CAP {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
        Ok(())
    }
}

impl SegPath {
    fn new(dir: &[u8], pid: u32, attempt: u32) -> Option<SegPath> {
        let mut p = SegPath {
            buf: [0; PATH_CAP],
            len: 0,
        };
        let dir = &dir[..dir.len() - 1]; // without its NUL
        p.buf[..dir.len()].copy_from_slice(dir);
        p.len = dir.len();
        write!(p, "/{}{}", abi::FILE_PREFIX, pid).ok()?;
        if attempt > 0 {
            write!(p, ".{attempt}").ok()?;
        }
        p.buf[p.len] = 0;
        Some(p)
    }

    fn cstr(&self) -> &core::ffi::CStr {
        // The buffer holds a NUL at `len` (written by `new`); a path with an
        // interior NUL (impossible: the directory was checked) ends early.
        core::ffi::CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"")
    }
}

/// Creates and maps the segment, or leaves stats off with one warning.
/// Call with no other thread of this process using stats yet.
pub fn create() {
    if !CONFIG.stats.load(Relaxed) {
        return;
    }
    let pid = os::getpid();
    let dir = CONFIG.stats_dir_cstr();
    let mut last_errno = 0;
    for attempt in 0..abi::NAME_ATTEMPTS {
        let Some(path) = SegPath::new(dir, pid, attempt) else {
            break;
        };
        match open_new(&path) {
            Ok(fd) => {
                if map_and_fill(fd, pid) {
                    // SAFETY: see PathCell.
                    unsafe { (&mut *PATH.0.get())[..=path.len].copy_from_slice(&path.buf[..=path.len]) };
                    return;
                }
                last_errno = log::errno();
                let _ = os::unlink(path.cstr());
                os::close(fd);
                break;
            }
            Err(e) => last_errno = e,
        }
    }
    log::warn(format_args!(
        "stats are off: could not create a segment in {} (errno {last_errno}); see MEMSCOPE_STATS_DIR",
        log::Bytes(&dir[..dir.len() - 1])
    ));
}

/// Creates `path` exclusively, reclaiming it once if it is our own stale
/// segment. Returns the descriptor or an errno.
fn open_new(path: &SegPath) -> Result<i32, i32> {
    for _ in 0..2 {
        match os::create_exclusive(path.cstr()) {
            Ok(fd) => {
                if !lock_shared(fd) {
                    // Someone opened our brand-new file and holds it: leave it.
                    os::close(fd);
                    return Err(libc::EBUSY);
                }
                return Ok(fd);
            }
            Err(e) if e != libc::EEXIST || !remove_if_stale(path) => return Err(e),
            Err(_) => {}
        }
    }
    Err(libc::EEXIST)
}

/// Takes the writer's shared lock, retrying briefly if a reader is probing.
fn lock_shared(fd: i32) -> bool {
    for _ in 0..100 {
        if os::try_lock(fd, false) {
            return true;
        }
        os::sleep_ns(100_000);
    }
    false
}

/// Removes `path` if it is a regular file of ours that no process holds.
fn remove_if_stale(path: &SegPath) -> bool {
    let Ok(fd) = os::open_read(path.cstr()) else {
        return false;
    };
    let ours = os::owner_of(fd).is_some_and(|(uid, regular)| regular && uid == os::geteuid());
    let removed = ours && os::try_lock(fd, true) && os::unlink(path.cstr()).is_ok();
    os::close(fd);
    removed
}

/// Set once the process may run NORECLAIM scopes (`prefault_for_scopes`);
/// a fork child inherits it, so its own new segment is faulted in too.
static PREFAULT: AtomicBool = AtomicBool::new(false);

/// Faults in the header and the two aggregate slots, which any thread,
/// NORECLAIM ones included, may write; segments made later (a fork
/// child's) are faulted in when made. Called when the process's NORECLAIM
/// pool is made, before its first scope is in force: a process that never
/// pushes one never pays for the pages (about 17 faults per exec).
pub fn prefault_for_scopes() {
    PREFAULT.store(true, Relaxed);
    let base = BASE.load(Acquire);
    if !base.is_null() {
        // SAFETY: a published BASE is the live, writable mapping.
        unsafe { prefault_shared(base) };
    }
}

/// # Safety
/// `base` is a writable mapping of the segment.
unsafe fn prefault_shared(base: *mut u8) {
    // SAFETY: the caller's contract.
    unsafe { os::prefault_write(base, abi::HEADER_SIZE + abi::SLOT_FIRST_THREAD * abi::SLOT_SIZE) };
    // The shared call-site tables (retired, overflow), which come first.
    // SAFETY: the caller's contract; the tables lie inside the mapping.
    unsafe {
        os::prefault_write(
            base.add(abi::SITES_OFFSET),
            abi::SLOT_FIRST_THREAD * abi::SITE_TABLE_SIZE,
        )
    };
}

fn map_and_fill(fd: i32, pid: u32) -> bool {
    if os::set_len(fd, abi::SEGMENT_SIZE).is_err() {
        return false;
    }
    let Some(base) = os::map_shared(fd, abi::SEGMENT_SIZE) else {
        return false;
    };
    if PREFAULT.load(Relaxed) {
        // SAFETY: the fresh writable mapping.
        unsafe { prefault_shared(base) };
    }
    // SAFETY: the mapping is at least HEADER_SIZE bytes, page-aligned.
    let h = unsafe { &mut *(base as *mut abi::Header) };
    super::clock::start_calibration();
    super::tid::learn_offset();
    h.magic = abi::MAGIC;
    h.byte_order.store(abi::BYTE_ORDER_MARK, Relaxed);
    h.abi_major.store(abi::ABI_MAJOR, Relaxed);
    h.abi_minor.store(abi::ABI_MINOR, Relaxed);
    h.header_size.store(abi::HEADER_SIZE as u32, Relaxed);
    h.segment_size.store(abi::SEGMENT_SIZE as u64, Relaxed);
    h.pid.store(pid, Relaxed);
    h.slot_count.store(abi::SLOT_TOTAL as u32, Relaxed);
    h.slot_size.store(abi::SLOT_SIZE as u32, Relaxed);
    h.bucket_count.store(abi::BUCKETS as u32, Relaxed);
    h.slots_offset.store(abi::HEADER_SIZE as u64, Relaxed);
    h.sites_offset.store(abi::SITES_OFFSET as u64, Relaxed);
    h.site_entries.store(abi::SITE_ENTRIES as u32, Relaxed);
    h.site_frames.store(abi::SITE_FRAMES as u32, Relaxed);
    h.site_table_size.store(abi::SITE_TABLE_SIZE as u32, Relaxed);
    super::locks::describe(h, crate::base::tls::lock_scope_flags());
    h.start_unix_ns.store(super::clock::realtime_ns(), Relaxed);
    h.sample_period.store(super::sample_period(), Relaxed);
    h.lib_version.store(crate::base::config::VERSION, Relaxed);
    h.event_count.store(abi::names::EVENTS.len() as u32, Relaxed);
    h.timer_count.store(abi::names::TIMERS.len() as u32, Relaxed);
    match os::cmdline(&mut h.cmdline) {
        Some(len) => h.cmdline_len.store(len as u32, Relaxed),
        None => CMDLINE_PENDING.store(true, Relaxed),
    }
    let hr: &'static abi::Header = h;
    slot(hr, abi::SLOT_RETIRED)
        .state
        .store(abi::SLOT_AGGREGATE, Relaxed);
    slot(hr, abi::SLOT_OVERFLOW)
        .state
        .store(abi::SLOT_AGGREGATE, Relaxed);
    crate::base::counters::move_into(&hr.events);
    hr.ready.store(abi::READY, Release);
    FD.store(fd, Relaxed);
    BASE.store(base, Release);
    true
}

/// Set when the segment was made before the library's initialiser ran (a
/// call from an earlier library's constructor: libstdc++'s, in every C++
/// program), so before the arguments were known: `fill_cmdline` writes
/// them when it runs. Until then readers show the command as "?".
static CMDLINE_PENDING: AtomicBool = AtomicBool::new(false);

/// The library's initialiser: writes the command line into a segment made
/// before it knew the arguments. The bytes first, then their length with
/// Release (readers read the length, then the bytes).
pub fn fill_cmdline() {
    if !CMDLINE_PENDING.swap(false, Relaxed) {
        return;
    }
    let base = BASE.load(Acquire);
    if base.is_null() {
        return;
    }
    // SAFETY: the live mapping's header; only this initialiser writes its
    // command line now (the segment's maker left it empty).
    let h = unsafe { &mut *(base as *mut abi::Header) };
    let len = os::cmdline(&mut h.cmdline).unwrap_or(0);
    h.cmdline_len.store(len as u32, Release);
}

/// Removes the file at normal exit (the mapping stays: destructors that
/// run later may still allocate and count). The segment is always this
/// process's own: a fork child replaced its parent's at the fork. One
/// syscall, `unlink`: a process whose seccomp filter forbids it and then
/// calls `exit` must run with MEMSCOPE_STATS=off (docs/STATS.md).
pub fn remove_at_exit() {
    if header().is_none() {
        return;
    }
    // SAFETY: PATH was written before BASE was published, never after.
    let path = unsafe { &*PATH.0.get() };
    let _ = os::unlink(core::ffi::CStr::from_bytes_until_nul(path).unwrap_or(c""));
}

/// The process is about to take `euid` as its effective user id: hand the
/// segment file to that user first, while the process may still (as root)
/// change a file's owner, so that the unlink at exit, made as that user,
/// is allowed in a sticky directory such as `/dev/shm`, and readers of
/// that user can open it. Returns the previous owner, for `restore_owner`
/// if the change of ids then fails; None if nothing was changed.
pub fn follow_owner(euid: libc::uid_t) -> Option<libc::uid_t> {
    let fd = FD.load(Relaxed);
    if fd < 0 || header().is_none() {
        return None;
    }
    let (owner, _) = os::owner_of(fd)?;
    // Fails harmlessly (EPERM) when the process may not.
    (owner != euid && os::chown(fd, euid).is_ok()).then_some(owner)
}

/// Gives the segment back to `uid` (the change of ids failed).
pub fn restore_owner(uid: libc::uid_t) {
    let fd = FD.load(Relaxed);
    if fd >= 0 {
        let _ = os::chown(fd, uid);
    }
}

/// In a forked child: forget the parent's segment (never write it again)
/// and make the child's own.
pub fn after_fork_in_child() {
    let old = BASE.swap(core::ptr::null_mut(), AcqRel);
    if old.is_null() {
        return;
    }
    crate::base::counters::detach();
    // SAFETY: the parent's mapping; the child has one thread, and it
    // stops using it here.
    unsafe { os::unmap(old.cast(), abi::SEGMENT_SIZE) };
    os::close(FD.swap(-1, Relaxed));
    create();
}
