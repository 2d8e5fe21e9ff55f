//! memscope's side: its lock gate (`memscope_abi::gate`: where the
//! calling thread's blocks lie, and the code that runs the usual section
//! on them), its two calls for what the gate leaves to it
//! (`memscope_lib_lock_enter`, `memscope_lib_lock_leave`), all found with
//! `dlsym`, and the address range of libmemscope.so, whose own lock calls
//! (jemalloc's mutexes) are not the program's.

use core::cell::Cell;
use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicU8, AtomicUsize, Ordering::*};

use memscope_abi::gate::{self, GateInfo, LockGate, Thread, Tracked};
use memscope_abi::OPS;

/// Copied from memscope's published gate once found: where the calling
/// thread's blocks lie from its thread pointer, and memscope's section
/// mode (copies here, so a lock call reads no pointer first).
static FLAGS_AT: AtomicIsize = AtomicIsize::new(0);
static COUNTDOWNS_AT: AtomicIsize = AtomicIsize::new(0);
static GATE_AT: AtomicIsize = AtomicIsize::new(0);
static MODE: AtomicPtr<AtomicU8> = AtomicPtr::new(core::ptr::null_mut());
static ENTER: AtomicUsize = AtomicUsize::new(0);
static LEAVE: AtomicUsize = AtomicUsize::new(0);
/// libmemscope.so's mapped range: `[LO, LO + LEN)`. Until memscope is
/// found, LEN is the whole address space: no call is the program's.
static LO: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(usize::MAX);

/// True if a lock call returning to `ra` is the program's: not from
/// inside libmemscope.so, and memscope is there to be told (everything
/// below is called only after this said yes).
#[inline(always)]
pub fn by_program(ra: usize) -> bool {
    ra.wrapping_sub(LO.load(Relaxed)) >= LEN.load(Relaxed)
}

/// The calling thread's blocks in memscope.
#[inline(always)]
fn thread() -> Thread<'static> {
    let tp: usize;
    // SAFETY: reads the TCB's pointer to itself (x86_64 Linux).
    unsafe {
        core::arch::asm!("mov {tp}, qword ptr fs:[0]", tp = out(reg) tp, options(nostack, pure, readonly));
    }
    let at = |off: &AtomicIsize| tp.wrapping_add_signed(off.load(Relaxed));
    // SAFETY: memscope's static TLS blocks, where its gate said (found
    // before `by_program` says yes).
    unsafe {
        Thread {
            flags: &*(at(&FLAGS_AT) as *const Cell<u32>),
            countdowns: &*(at(&COUNTDOWNS_AT) as *const [Cell<u64>; OPS]),
            gate: &*(at(&GATE_AT) as *const LockGate),
        }
    }
}

#[cold]
#[inline(never)]
fn memscope_enter(site: usize) {
    // SAFETY: memscope_lib_lock_enter's address, found by name.
    let f: extern "C" fn(*const c_void) = unsafe { core::mem::transmute(ENTER.load(Relaxed)) };
    f(site as *const c_void);
}

/// memscope ends the section (`Counted::memscope_leaves`).
#[cold]
#[inline(never)]
pub fn memscope_leave() {
    // SAFETY: memscope_lib_lock_leave's address, found by name.
    let f: extern "C" fn() = unsafe { core::mem::transmute(LEAVE.load(Relaxed)) };
    f();
}

/// The program took the lock at `lock`; its call returns to `ra`. The
/// usual section begins here (`gate::enter_ready`); a section with flags
/// to enter, or one that needs memscope's work, begins in memscope.
#[inline(always)]
pub fn acquired(lock: *mut c_void, ra: usize) {
    let t = thread();
    let tracked = gate::track(t.gate, lock as usize);
    counted(&t, tracked, ra);
}

/// A release counted by number failed: the lock is held still, counted by
/// number again (not tracked by address: the thread may not own it).
#[cold]
pub fn recounted(ra: usize) {
    let t = thread();
    let tracked = gate::recount(t.gate);
    counted(&t, tracked, ra);
}

/// A lock counted (`tracked`): the section begins if it is the first.
#[inline(always)]
fn counted(t: &Thread<'static>, tracked: Tracked, ra: usize) {
    match tracked {
        Tracked::Ignored => {}
        Tracked::First => {
            let cur = t.flags.get();
            // SAFETY: memscope's static `MEMSCOPE_LOCK_SCOPE` value.
            let mode = u32::from(unsafe { (*MODE.load(Relaxed)).load(Relaxed) });
            if mode & !cur != 0 || !gate::enter_ready(t, cur, 0, ra) {
                memscope_enter(ra);
            }
        }
        Tracked::Nested => {
            if gate::nested_needs_enter(t) {
                memscope_enter(ra);
            }
        }
    }
}

/// A counted release, and what is left to do for it.
#[derive(Clone, Copy)]
pub struct Counted {
    /// Found by address: a lock the thread was seen to take, so its own,
    /// whose release cannot fail (else counted by number only).
    pub by_address: bool,
    /// The last lock, and its end leaves NORECLAIM: `memscope_leave`.
    pub memscope_leaves: bool,
}

/// The program is about to release the lock at `lock`: None if its
/// acquisition was not counted (a lock the thread was not seen to take,
/// or a release not the program's). The last one ends the section here
/// unless that leaves NORECLAIM.
#[inline(always)]
pub fn released(lock: *mut c_void) -> Option<Counted> {
    let t = thread();
    let r = gate::untrack(t.gate, lock as usize)?;
    let mut memscope_leaves = false;
    if r.last {
        if gate::end_leaves_noreclaim(&t) {
            memscope_leaves = true;
        } else {
            gate::end(&t);
        }
    }
    Some(Counted {
        by_address: r.by_address,
        memscope_leaves,
    })
}

/// Finds memscope's gate, its calls and its range (the library's
/// constructor). Without libmemscope.so, or with one whose gate has
/// another layout, nothing is found: everything passes through.
pub fn find_memscope() {
    let sym = |name: &core::ffi::CStr| {
        // SAFETY: NUL-terminated name; RTLD_DEFAULT searches the global scope.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) as usize }
    };
    let (gate_fn, enter, leave) = (
        sym(c"memscope_lib_lock_gate"),
        sym(c"memscope_lib_lock_enter"),
        sym(c"memscope_lib_lock_leave"),
    );
    if gate_fn == 0 || enter == 0 || leave == 0 {
        return;
    }
    // SAFETY: memscope_lib_lock_gate's address, found by name.
    let gate_fn: extern "C" fn() -> *const GateInfo = unsafe { core::mem::transmute(gate_fn) };
    let info = gate_fn();
    if info.is_null() {
        return;
    }
    // SAFETY: memscope's static, published above.
    let i = unsafe { &*info };
    if i.version.load(Acquire) != gate::GATE_VERSION
        || i.size.load(Relaxed) as usize != core::mem::size_of::<GateInfo>()
    {
        return;
    }
    let Some((lo, len)) = object_range(enter) else {
        return;
    };
    ENTER.store(enter, Relaxed);
    LEAVE.store(leave, Relaxed);
    FLAGS_AT.store(i.flags_at.load(Relaxed), Relaxed);
    COUNTDOWNS_AT.store(i.countdowns_at.load(Relaxed), Relaxed);
    GATE_AT.store(i.gate_at.load(Relaxed), Relaxed);
    MODE.store(i.mode as *mut AtomicU8, Relaxed);
    LO.store(lo, Relaxed);
    // Last: `by_program` says no until the range is whole.
    LEN.store(len, Relaxed);
}

/// The lowest and the span of the loadable segments of the object that
/// holds `addr`.
fn object_range(addr: usize) -> Option<(usize, usize)> {
    struct Search {
        base: usize,
        lo: usize,
        hi: usize,
    }
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: the loader's record of one object, and our `Search`.
        let (info, s) = unsafe { (&*info, &mut *(data as *mut Search)) };
        let mut lo = usize::MAX;
        let mut hi = 0;
        let mut mine = false;
        for k in 0..info.dlpi_phnum as usize {
            // SAFETY: dlpi_phnum headers at dlpi_phdr.
            let ph = unsafe { &*info.dlpi_phdr.add(k) };
            if ph.p_type != libc::PT_LOAD {
                continue;
            }
            let start = (info.dlpi_addr as usize).wrapping_add(ph.p_vaddr as usize);
            let end = start.wrapping_add(ph.p_memsz as usize);
            lo = lo.min(start);
            hi = hi.max(end);
            mine |= (start..end).contains(&s.base);
        }
        if mine {
            s.lo = lo;
            s.hi = hi;
            return 1;
        }
        0
    }
    let mut s = Search {
        base: addr,
        lo: 0,
        hi: 0,
    };
    // SAFETY: `visit` only reads the records and writes `s`.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut s as *mut Search as *mut c_void) };
    (s.hi > s.lo).then(|| (s.lo, s.hi - s.lo))
}
