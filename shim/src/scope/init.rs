//! Process and thread life: the option table is read, and jemalloc's
//! configuration is settled, before jemalloc first runs; a thread's first
//! allocator call sets it up, and its exit (a `pthread_key` destructor)
//! takes it down.
//!
//! Every new thread starts with `THREAD_UNSEEN` in its flag word, so its
//! first allocator call lands here once; the first such call in the
//! process (often from another library's constructor, before ours) does
//! the global part. Rule: nothing here calls malloc.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::ffi::{c_char, c_int};
use core::sync::atomic::Ordering::{AcqRel, Acquire};
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU8, Ordering};

use crate::stats;

use crate::base::{config, log, mailbox, tls};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
static GLOBAL: AtomicU8 = AtomicU8::new(UNINIT);

/// jemalloc reads this string (its `malloc_conf` symbol, prefixed) when it
/// initialises. memscope points it at a copy of `MALLOC_CONF`, so the
/// variable users know keeps working although this jemalloc is built with
/// the `_rjem_` prefix (whose own variable, `_RJEM_MALLOC_CONF`, is read
/// after this and wins where both set an option).
#[no_mangle]
pub static _rjem_malloc_conf: AtomicPtr<c_char> = AtomicPtr::new(core::ptr::null_mut());

const CONF_MAX: usize = 1024;

/// The copy of `MALLOC_CONF` that `_rjem_malloc_conf` points at.
struct ConfBuf(UnsafeCell<[u8; CONF_MAX]>);
// SAFETY: written once by the thread that runs `global_slow`, before DONE
// is published with a release store; never written again.
unsafe impl Sync for ConfBuf {}
static CONF_BUF: ConfBuf = ConfBuf(UnsafeCell::new([0; CONF_MAX]));

/// Runs the global part of initialisation once; other threads that get
/// here meanwhile spin until it is done (microseconds; up to 10 ms when a
/// reader happens to probe the new stats segment's lock, see
/// `stats::segment`).
#[inline]
pub fn global() {
    if GLOBAL.load(Ordering::Acquire) != DONE {
        global_slow();
    }
}

#[cold]
fn global_slow() {
    match GLOBAL.compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {
            config::load();
            copy_malloc_conf();
            stats::segment::create();
            GLOBAL.store(DONE, Ordering::Release);
        }
        Err(_) => {
            while GLOBAL.load(Ordering::Acquire) != DONE {
                core::hint::spin_loop();
            }
        }
    }
}

/// Points `_rjem_malloc_conf` at a copy of `MALLOC_CONF` if it is set.
fn copy_malloc_conf() {
    let mut found: Option<&[u8]> = None;
    // In secure-execution mode the caller's MALLOC_CONF is not ours to
    // pass on (jemalloc itself would not read it: see
    // `config::secure_execution`).
    let secure = config::secure_execution();
    config::for_each_env(|name, value| {
        if secure {
            return;
        }
        if name == b"MALLOC_CONF" {
            // SAFETY: `environ`'s strings outlive load; only the slice is kept.
            found = Some(unsafe { core::slice::from_raw_parts(value.as_ptr(), value.len()) });
        }
    });
    let Some(user) = found else { return };
    if user.len() >= CONF_MAX {
        log::warn(format_args!(
            "MALLOC_CONF is {} bytes, longer than {}: ignored",
            user.len(),
            CONF_MAX - 1
        ));
        return;
    }
    // SAFETY: CONF_BUF is written only here, once, while GLOBAL is RUNNING
    // (no other thread proceeds to jemalloc until DONE is published).
    unsafe {
        let buf = &mut *CONF_BUF.0.get();
        buf[..user.len()].copy_from_slice(user);
        buf[user.len()] = 0;
        _rjem_malloc_conf.store(buf.as_mut_ptr().cast(), Ordering::Release);
    }
}

/// The calling thread's first allocator call: global init, then clear the
/// unseen bit. Returns the thread's scope flags.
#[cold]
pub fn thread_first_call() -> u32 {
    global();
    let st = tls::state();
    let flags = st.flags.get() & !tls::THREAD_UNSEEN;
    st.flags.set(flags);
    stats::thread::start(st);
    if let Some(h) = stats::segment::header() {
        // Its numbers are folded into the retired slot when it exits.
        register_thread_exit();
        // Once the process has a second thread, the maintenance thread
        // keeps idle threads' counts current in the segment. (Never in a
        // single-threaded process, which may rely on staying so, e.g. for
        // unshare(CLONE_NEWUSER); and never before jemalloc's mallctl tree
        // is ready: see `stats::thread::CTL_READY`.) A new thread's
        // set-up may make syscalls: it tries again after a failed start.
        if h.threads_seen.load(core::sync::atomic::Ordering::Relaxed) >= 2 && stats::thread::ctl_ready() {
            mailbox::retry_start();
        }
    }
    flags
}

/// `on_load`, in the module's initialisers. By hand rather than with the
/// `ctor` crate because glibc calls initialisers with `argc`, `argv` and
/// `envp`, and the stats segment's command line is taken from `argv`
/// (`os::cmdline`).
#[used]
#[link_section = ".init_array"]
static ON_LOAD: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = on_load;

/// Runs when the library is loaded, in case no allocation came first.
extern "C" fn on_load(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    if another_copy_serves() {
        return;
    }
    crate::os::note_argv(usize::try_from(argc).unwrap_or(0), argv);
    stats::sites::learn_at_load();
    global();
    // If an earlier library's constructor allocated first, the segment
    // exists already, made without the arguments.
    stats::segment::fill_cmdline();
    // jemalloc's mallctl tree: initialised here, where this thread holds no
    // jemalloc lock, only if a background thread could start before any
    // mallctl; otherwise when first needed (see `stats::thread::CTL_LAZY`).
    if background_threads_configured() {
        stats::thread::init_ctl();
    } else {
        stats::thread::CTL_LAZY.store(true, core::sync::atomic::Ordering::Relaxed);
    }
    // Address space for the pool and the NOFAIL reserve, and the
    // maintenance thread's channel, before the program can use it all up
    // (nothing is committed until a scope; the thread starts later).
    crate::pool::reserve_at_load();
    // jemalloc registers its fork handlers when it initialises; ours must
    // come after them, so that ours run first at a fork (`pool::before_fork`
    // waits for a pool being made, which takes jemalloc's locks). nallocx
    // initialises jemalloc, allocating nothing. (The mallctl made here
    // before the tree became lazy did it as a side effect; without it a
    // program whose first malloc came after this point deadlocked at fork,
    // c-tests/noreclaim/fork_noreclaim.c, about 1 run in 10.)
    // SAFETY: nallocx has no preconditions.
    unsafe { tikv_jemalloc_sys::nallocx(1, 0) };
    // Here, not in `global`: registering may allocate, and `global` may
    // run inside the first malloc.
    // SAFETY: registering a handler with no preconditions.
    unsafe {
        libc::pthread_atfork(
            Some(before_fork),
            Some(after_fork_in_parent),
            Some(after_fork_in_child),
        );
        libc::atexit(stats::at_exit);
    }
    stats::finish_start_up();
}

/// True if jemalloc may have been told to run background threads from
/// its start: its option is named in `MALLOC_CONF` or `_RJEM_MALLOC_CONF`,
/// or `/etc/_rjem_malloc.conf` (a symbolic link jemalloc reads options
/// from) exists. (memscope itself turns them on only through a mallctl.)
fn background_threads_configured() -> bool {
    let mut named = false;
    config::for_each_env(|name, value| {
        if (name == b"MALLOC_CONF" || name == b"_RJEM_MALLOC_CONF")
            && value
                .windows(b"background_thread".len())
                .any(|w| w == b"background_thread")
        {
            named = true;
        }
    });
    named || crate::os::is_symlink(c"/etc/_rjem_malloc.conf")
}

/// True in a copy of memscope linked into a program (the Rust crate
/// `memscope`) when a libmemscope.so is loaded in the process too
/// (preloaded, or needed by a C library): the library serves the whole
/// process (the crate forwards to it) and this copy stays idle: no stats
/// segment, no address space reserved, no fork handlers. Only the library
/// defines `memscope_lib_version`; a second copy of the library loaded
/// from another path sees the first one's and stays idle as well.
fn another_copy_serves() -> bool {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name; dladdr
    // with valid out-pointers, on addresses of loaded code.
    unsafe {
        let found = libc::dlsym(libc::RTLD_DEFAULT, c"memscope_lib_version".as_ptr());
        if found.is_null() {
            return false;
        }
        let mut mine: libc::Dl_info = core::mem::zeroed();
        let mut theirs: libc::Dl_info = core::mem::zeroed();
        if libc::dladdr(on_load as *const c_void, &mut mine) == 0
            || libc::dladdr(found.cast_const(), &mut theirs) == 0
        {
            return false;
        }
        mine.dli_fbase != theirs.dli_fbase
    }
}

/// Registered after jemalloc's own handlers (its init ran above), so this
/// runs before jemalloc locks its mutexes for the fork.
extern "C" fn before_fork() {
    // jemalloc's locks and unlocks around the fork are not the program's,
    // whatever their return addresses say (`lock`, D63).
    tls::bss().lock.ignore.set(1);
    crate::pool::before_fork();
}

/// jemalloc's handlers ran before this one (registered first): its unlocks
/// were not counted as the program's releases.
extern "C" fn after_fork_in_parent() {
    crate::pool::after_fork();
    crate::pool::forked_in_parent();
    tls::bss().lock.ignore.set(0);
}

/// Everything a forked child must redo, in one place: it gets its own
/// stats segment, where its one thread counts; and it has no maintenance
/// thread, so the mailbox forgets the parent's (the next start makes one).
extern "C" fn after_fork_in_child() {
    crate::os::forget_argv();
    mailbox::forget();
    crate::pool::after_fork();
    crate::front::depot::after_fork_in_child();
    stats::segment::after_fork_in_child();
    stats::thread::after_fork_in_child(tls::state());
    tls::bss().lock.ignore.set(0);
}

// ------------------------------------------------------------ thread exit

static EXIT_KEY: AtomicU32 = AtomicU32::new(u32::MAX);

/// Arranges for `on_thread_exit` to run when the calling thread exits.
pub fn register_thread_exit() {
    let mut key = EXIT_KEY.load(Acquire);
    if key == u32::MAX {
        let mut k: libc::pthread_key_t = 0;
        // SAFETY: `k` is a valid out-pointer; the destructor is extern "C".
        if unsafe { libc::pthread_key_create(&mut k, Some(on_thread_exit)) } != 0 {
            return;
        }
        key = match EXIT_KEY.compare_exchange(u32::MAX, k, AcqRel, Acquire) {
            Ok(_) => k,
            Err(existing) => {
                // SAFETY: `k` was just created and never used.
                unsafe { libc::pthread_key_delete(k) };
                existing
            }
        };
    }
    // SAFETY: `key` is a live key; any non-NULL value makes the destructor run.
    unsafe { libc::pthread_setspecific(key, core::ptr::dangling::<c_void>()) };
}

/// The thread's exit hook. The key is made at the process's first
/// allocation, so the program's own keys' destructors, and glibc's frees
/// after all of them, come later: the thread is marked exited (no scope,
/// every call on the slow path, see `tls::THREAD_EXITED`) rather than made
/// plain, so that those calls are counted and their pool blocks reach the
/// depot. Runs again if a later destructor registers it anew (its first
/// NORECLAIM push): each run drains and folds what came since.
extern "C" fn on_thread_exit(_: *mut c_void) {
    // The thread may exit inside a scope: from here on it is in none.
    let st = tls::state();
    st.flags.set(tls::THREAD_EXITED);
    st.depth.set(0);
    crate::stats::thread::bias(&st.stats);
    crate::base::mailbox::flush_thread();
    crate::front::magazine::drain();
    crate::stats::thread::exit(st);
}
