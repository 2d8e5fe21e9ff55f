//! Tier 0 of the shim: every OS call the allocator makes, in one place
//! (mimalloc's `prim/`):
//! "this path makes no syscall" is audited by reading this file's callers.
//! Thin, allocation-free wrappers; errors come back as `errno` values.
//!
//! Which callers may run on a NORECLAIM thread: none of these, except
//! `errno`/`set_errno` (thread-local, no syscall). Clock reads go through
//! the vDSO where the kernel allows (no syscall), but are still used only
//! off scoped threads; scoped threads time themselves with the TSC
//! (`stats::clock`).
//!
//! Tier 0. Owns every OS call, and the process's memory cgroup (`cgroup`:
//! limits and the pressure files, read through this file). May call:
//! nothing else in the crate.

pub(crate) mod cgroup;

use core::ffi::{c_char, c_void, CStr};
use core::ptr::null_mut;
use core::sync::atomic::{
    AtomicPtr, AtomicU8, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};

pub type Fd = i32;

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: glibc's thread-local errno location is always valid.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: i32) {
    // SAFETY: as `errno`.
    unsafe { *libc::__errno_location() = e };
}

fn check(rc: libc::c_int) -> Result<(), i32> {
    if rc == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

// ------------------------------------------------------------ facts

/// The page size (`sysconf`; 4096 if it cannot say).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Physical memory in bytes (0 if unknown).
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64)
}

/// True if `RLIMIT_AS` is finite.
pub fn address_space_limited() -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) == 0 && rl.rlim_cur != libc::RLIM_INFINITY }
}

/// True in secure-execution mode (`AT_SECURE` in the auxiliary vector).
pub fn secure_execution() -> bool {
    // SAFETY: getauxval has no preconditions; 0 when the entry is absent.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

pub fn getpid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() as u32 }
}

pub fn geteuid() -> libc::uid_t {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() }
}

/// The calling thread's id, by syscall.
pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

// ------------------------------------------------------------ memory

/// Reserves `len` bytes of address space (`PROT_NONE`, `MAP_NORESERVE`).
pub fn reserve(len: usize) -> Option<*mut c_void> {
    // SAFETY: a fresh anonymous mapping at a kernel-chosen address.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p)
}

/// Replaces `[at, at + len)`, inside a reservation of the caller's, with
/// readable, writable, pre-faulted memory (`MAP_FIXED|MAP_POPULATE`).
///
/// # Safety
/// The range lies inside a mapping the caller owns and nothing else uses.
pub unsafe fn commit_populated(at: *mut c_void, len: usize) -> Result<(), i32> {
    // SAFETY: the caller's contract: MAP_FIXED replaces only its own range.
    let p = unsafe {
        libc::mmap(
            at,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_POPULATE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Drops the pages of `[at, at + len)` (`MADV_DONTNEED`): the range stays
/// mapped and readable (zeros), and is faulted in again when touched.
///
/// # Safety
/// The range lies inside a private anonymous mapping the caller owns,
/// whose contents nobody needs.
pub unsafe fn drop_pages(at: *mut c_void, len: usize) -> Result<(), i32> {
    // SAFETY: the caller's contract.
    if unsafe { libc::madvise(at, len, libc::MADV_DONTNEED) } != 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Gives `[at, at + len)` back to the OS and leaves it reserved address
/// space (`PROT_NONE`, `MAP_NORESERVE`), as `reserve` made it.
///
/// # Safety
/// The range lies inside a mapping the caller owns, unused from now.
pub unsafe fn decommit(at: *mut c_void, len: usize) -> Result<(), i32> {
    // SAFETY: the caller's contract: MAP_FIXED replaces only its own range.
    let p = unsafe {
        libc::mmap(
            at,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(errno())
    } else {
        Ok(())
    }
}

/// Unmaps `[p, p + len)`.
///
/// # Safety
/// The range is the caller's own mapping (or part of it), unused from now.
pub unsafe fn unmap(p: *mut c_void, len: usize) {
    // SAFETY: the caller's contract.
    unsafe { libc::munmap(p, len) };
}

/// Locks `[p, p + len)` in memory.
pub fn mlock(p: *const c_void, len: usize) -> Result<(), i32> {
    // SAFETY: mlock only pins pages; a bad range fails with ENOMEM.
    check(unsafe { libc::mlock(p, len) })
}

/// Maps `len` bytes of file `fd` shared, read-write.
pub fn map_shared(fd: Fd, len: usize) -> Option<*mut u8> {
    // SAFETY: a fresh shared mapping at a kernel-chosen address.
    let p = unsafe {
        libc::mmap(
            null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p.cast())
}

/// Faults in, writable, every page of `[start, start + len)`: a
/// compare-exchange of one byte per page (and of the last byte) with its
/// own value, a write that changes nothing and is safe against other
/// threads using the same bytes (x86's `lock cmpxchg` writes even when it
/// fails). Not an atomic add of 0: LLVM turns that idempotent operation
/// into a plain load, which maps a page read-only and leaves the write
/// fault for later (two faults on a NORECLAIM thread, in its stats slot,
/// until the seccomp test's fault counter caught it). Used outside every
/// scope so that a NORECLAIM thread's first use of memory it needs takes
/// no page fault. The one way memscope pre-faults.
///
/// # Safety
/// The range is mapped writable.
pub unsafe fn prefault_write(start: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let page = page_size();
    let first = start as usize & !(page - 1);
    let last = start as usize + len - 1;
    let touch = |at: usize| {
        let at = at.max(start as usize);
        use core::sync::atomic::{AtomicU8, Ordering::Relaxed};
        // SAFETY: inside the caller's writable range.
        let byte = unsafe { &*(at as *const AtomicU8) };
        let v = byte.load(Relaxed);
        let _ = byte.compare_exchange(v, v, Relaxed, Relaxed);
    };
    for at in (first..=last).step_by(page) {
        touch(at);
    }
    touch(last);
}

/// Faults in, for reading, every page of `[start, start + len)`.
///
/// # Safety
/// The range is mapped readable.
pub unsafe fn prefault_read(start: *const u8, len: usize) {
    if len == 0 {
        return;
    }
    let page = page_size();
    let first = start as usize & !(page - 1);
    for at in (first..start as usize + len).step_by(page) {
        // SAFETY: inside the caller's readable range (`at` may precede
        // `start` on its page, which is mapped as a whole).
        unsafe { core::ptr::read_volatile(at.max(start as usize) as *const u8) };
    }
}

// ------------------------------------------------------------ files

/// Creates `path` exclusively (never following a symlink), mode 0600.
pub fn create_exclusive(path: &CStr) -> Result<Fd, i32> {
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
    if fd >= 0 {
        Ok(fd)
    } else {
        Err(errno())
    }
}

/// Opens `path` read-only (never following a symlink, never blocking on a
/// FIFO).
pub fn open_read(path: &CStr) -> Result<Fd, i32> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd >= 0 {
        Ok(fd)
    } else {
        Err(errno())
    }
}

/// Opens a pressure file (`memory.pressure`, `/proc/pressure/memory`)
/// read-write without blocking, to write a PSI trigger into it.
pub fn open_trigger(path: &CStr) -> Result<Fd, i32> {
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd >= 0 {
        Ok(fd)
    } else {
        Err(errno())
    }
}

/// Writes all of `bytes` to `fd` in one call (a PSI trigger must arrive
/// whole); the errno otherwise.
pub fn write_once(fd: Fd, bytes: &[u8]) -> Result<(), i32> {
    // SAFETY: `bytes` is valid for reads of its length.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n == bytes.len() as isize {
        Ok(())
    } else if n < 0 {
        Err(errno())
    } else {
        Err(libc::EIO)
    }
}

/// Reads `fd` from offset 0 into `buf` (one call); how many bytes.
pub fn read_at_start(fd: Fd, buf: &mut [u8]) -> usize {
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    n.max(0) as usize
}

/// Waits, without a timeout, until one of `fds` has an event; their
/// `revents` say which. EINTR is not an error (the caller loops).
pub fn poll_forever(fds: &mut [libc::pollfd]) -> Result<(), i32> {
    // SAFETY: `fds` is valid for its length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
    if n >= 0 || errno() == libc::EINTR {
        Ok(())
    } else {
        Err(errno())
    }
}

/// Runs `f` (a thread's creation) with every signal blocked on the
/// calling thread, so that the thread it starts begins with all of them
/// blocked: memscope's own threads never run the program's signal
/// handlers. One did: a handler that took the program's spinlock on the
/// maintenance thread, whose interrupted stocking held the pool arena's
/// lock, deadlocked with the same handler on another thread (as jemalloc
/// does for its background threads).
pub fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is plain data; all zeros is a valid value, filled
    // by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: as above (filled by pthread_sigmask).
    let mut old: libc::sigset_t = unsafe { core::mem::zeroed() };
    // SAFETY: valid sets; pthread_sigmask only changes this thread's mask.
    let blocked = unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) == 0
    };
    let r = f();
    if blocked {
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    }
    r
}

/// Starts a detached thread running `main` on a stack of `stack` bytes,
/// every signal blocked in it (`with_signals_blocked`). Nothing here
/// allocates with malloc in the new thread.
pub fn spawn_small_thread(main: extern "C" fn(*mut c_void) -> *mut c_void, stack: usize) -> Result<(), i32> {
    with_signals_blocked(|| spawn_small_thread_now(main, stack))
}

fn spawn_small_thread_now(main: extern "C" fn(*mut c_void) -> *mut c_void, stack: usize) -> Result<(), i32> {
    // SAFETY: attr is initialised before use and destroyed after; `main`
    // is a valid start routine that ignores its argument.
    unsafe {
        let mut attr = core::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_attr_init(attr.as_mut_ptr()) != 0 {
            return Err(libc::EAGAIN);
        }
        let attr = attr.as_mut_ptr();
        libc::pthread_attr_setstacksize(attr, stack.max(libc::PTHREAD_STACK_MIN));
        libc::pthread_attr_setdetachstate(attr, libc::PTHREAD_CREATE_DETACHED);
        let mut tid = core::mem::MaybeUninit::<libc::pthread_t>::uninit();
        let rc = libc::pthread_create(tid.as_mut_ptr(), attr, main, null_mut());
        libc::pthread_attr_destroy(attr);
        if rc == 0 {
            Ok(())
        } else {
            Err(rc)
        }
    }
}

/// Names the calling thread (as `/proc/PID/task/TID/comm` shows it).
pub fn name_thread(name: &CStr) {
    // SAFETY: a NUL-terminated name of at most 15 bytes (longer is cut by
    // the kernel's EINVAL, which is ignored: the name is cosmetic).
    unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
}

/// Reads up to `buf.len()` bytes of the small file at `path` (a `/proc`
/// file) into `buf`; returns how many (0 if it cannot be read).
pub fn read_small_file(path: &CStr, buf: &mut [u8]) -> usize {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    let mut len = 0;
    while len < buf.len() {
        // SAFETY: `buf[len..]` is valid for writes of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().add(len).cast(), buf.len() - len) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd);
    len
}

/// The process's arguments as glibc handed them to the library's
/// initialiser (`note_argv`); null before it runs, and in a fork child
/// (`forget_argv`).
static ARGV: AtomicPtr<*const c_char> = AtomicPtr::new(null_mut());
static ARGC: AtomicUsize = AtomicUsize::new(0);
/// Where `cmdline` takes the command line from.
static ARGV_STATE: AtomicU8 = AtomicU8::new(ARGV_NOT_YET);
/// The initialiser has not run: the arguments will be known.
const ARGV_NOT_YET: u8 = 0;
const ARGV_NOTED: u8 = 1;
/// Read `/proc/self/cmdline`.
const ARGV_FROM_PROC: u8 = 2;

/// Records the arguments glibc passes to initialisers (`argv` stays valid
/// for the life of the process: it is the kernel's copy on the stack).
/// Null or empty: the command line is read from /proc.
pub fn note_argv(argc: usize, argv: *const *const c_char) {
    if argc == 0 || argv.is_null() {
        ARGV_STATE.store(ARGV_FROM_PROC, Relaxed);
        return;
    }
    ARGC.store(argc, Relaxed);
    ARGV.store(argv.cast_mut(), Relaxed);
    ARGV_STATE.store(ARGV_NOTED, Release);
}

/// A fork child reads `/proc/self/cmdline` again: a server that renames its
/// children (PostgreSQL writes each backend's title over its arguments)
/// shows the title there.
pub fn forget_argv() {
    ARGV_STATE.store(ARGV_FROM_PROC, Relaxed);
}

/// The process's command line as `/proc/self/cmdline` gives it (each
/// argument followed by a NUL), truncated to `out`; returns its length, or
/// None before the library's initialiser has run, when the arguments are
/// about to be known (`note_argv`). From the noted arguments, which saves
/// the open, two reads and the close of a /proc file (about 30 us of every
/// exec in a VM); from the file in a fork child.
pub fn cmdline(out: &mut [u8]) -> Option<usize> {
    match ARGV_STATE.load(Acquire) {
        ARGV_NOT_YET => return None,
        ARGV_NOTED => {}
        _ => return Some(read_small_file(c"/proc/self/cmdline", out)),
    }
    let argv = ARGV.load(Relaxed);
    let mut len = 0;
    for i in 0..ARGC.load(Relaxed) {
        // SAFETY: argv has ARGC valid entries, each a NUL-terminated string.
        let arg = unsafe { *argv.add(i) };
        if arg.is_null() {
            break;
        }
        // SAFETY: as above.
        let bytes = unsafe { CStr::from_ptr(arg) }.to_bytes_with_nul();
        let n = bytes.len().min(out.len() - len);
        out[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
        if len == out.len() {
            break;
        }
    }
    Some(len)
}

pub fn close(fd: Fd) {
    // SAFETY: closing a descriptor the caller owns.
    unsafe { libc::close(fd) };
}

pub fn chmod(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::chmod(path.as_ptr(), mode) })
}

/// True if `path` is a symbolic link (whatever it points to).
pub fn is_symlink(path: &CStr) -> bool {
    let mut target = [0u8; 1];
    // SAFETY: a NUL-terminated path and a buffer of the length given.
    unsafe { libc::readlink(path.as_ptr(), target.as_mut_ptr().cast(), target.len()) >= 0 }
}

pub fn unlink(path: &CStr) -> Result<(), i32> {
    // SAFETY: a NUL-terminated path.
    check(unsafe { libc::unlink(path.as_ptr()) })
}

pub fn set_len(fd: Fd, len: usize) -> Result<(), i32> {
    // SAFETY: a descriptor the caller owns.
    check(unsafe { libc::ftruncate(fd, len as libc::off_t) })
}

/// Owner and whether it is a regular file.
pub fn owner_of(fd: Fd) -> Option<(libc::uid_t, bool)> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0)
        .then_some((st.st_uid, st.st_mode & libc::S_IFMT == libc::S_IFREG))
}

/// Gives the file to `uid` (its group unchanged).
pub fn chown(fd: Fd, uid: libc::uid_t) -> Result<(), i32> {
    // SAFETY: a descriptor the caller owns.
    check(unsafe { libc::fchown(fd, uid, libc::gid_t::MAX) })
}

/// `flock` without waiting: `exclusive` or shared. True if taken.
pub fn try_lock(fd: Fd, exclusive: bool) -> bool {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH };
    // SAFETY: a descriptor the caller owns.
    unsafe { libc::flock(fd, op | libc::LOCK_NB) == 0 }
}

/// Writes all of `bytes` to stderr, retrying on EINTR and short writes
/// (other errors: given up).
pub fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for reads of its length.
        let n = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
        } else if !(n < 0 && errno() == libc::EINTR) {
            return;
        }
    }
}

// ------------------------------------------------------------ time

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds (a tick's resolution, cheaper).
pub fn coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// CLOCK_REALTIME in nanoseconds.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Sleeps about `ns` nanoseconds (an early wake-up, EINTR, is harmless).
pub fn sleep_ns(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is valid.
    unsafe { libc::nanosleep(&ts, null_mut()) };
}

/// Ends the process with SIGABRT (no unwinding, no destructors).
pub fn abort() -> ! {
    // SAFETY: no preconditions.
    unsafe { libc::abort() }
}

pub fn yield_now() {
    // SAFETY: no preconditions.
    unsafe { libc::sched_yield() };
}

// ------------------------------------------------------------ futex

/// Waits while `*word == expected`, at most `timeout_ns` (private futex).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32, timeout_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid futex word and timespec; the kernel only reads them.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

/// Wakes every waiter on `word` (private futex).
pub fn futex_wake_all(word: &core::sync::atomic::AtomicU32) {
    // SAFETY: a valid futex word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}
