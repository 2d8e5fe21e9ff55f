//! memscope's side: its two lock calls (`memscope_lib_lock_acquired`,
//! `memscope_lib_lock_released`, found with `dlsym`), and the address
//! range of libmemscope.so, whose own lock calls (jemalloc's mutexes)
//! are not the program's.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

static ACQUIRED: AtomicUsize = AtomicUsize::new(0);
static RELEASED: AtomicUsize = AtomicUsize::new(0);
/// libmemscope.so's mapped range: `[LO, LO + LEN)`.
static LO: AtomicUsize = AtomicUsize::new(0);
static LEN: AtomicUsize = AtomicUsize::new(0);

/// True if a lock call returning to `ra` is the program's: not from
/// inside libmemscope.so (and memscope is there to be told).
#[inline(always)]
pub fn by_program(ra: usize) -> bool {
    ra.wrapping_sub(LO.load(Relaxed)) >= LEN.load(Relaxed) && ACQUIRED.load(Relaxed) != 0
}

/// The program took the lock at `lock`; its call returns to `ra`.
#[inline(always)]
pub fn acquired(lock: *mut c_void, ra: usize) {
    let f = ACQUIRED.load(Relaxed);
    if f != 0 {
        // SAFETY: memscope_lib_lock_acquired's address, found by name.
        let f: extern "C" fn(*const c_void, *const c_void) = unsafe { core::mem::transmute(f) };
        f(lock, ra as *const c_void);
    }
}

/// The program is about to release the lock at `lock`: true if memscope
/// counted its acquisition (memscope keeps the held locks' addresses, so
/// a release that is not the program's counts nothing).
#[inline(always)]
pub fn released(lock: *mut c_void) -> bool {
    let f = RELEASED.load(Relaxed);
    if f == 0 {
        return false;
    }
    // SAFETY: memscope_lib_lock_released's address, found by name.
    let f: extern "C" fn(*const c_void) -> c_int = unsafe { core::mem::transmute(f) };
    f(lock) != 0
}

/// Finds memscope's calls and its range (the library's constructor).
/// Without libmemscope.so, the calls stay unset: everything passes through.
pub fn find_memscope() {
    // SAFETY: NUL-terminated names; RTLD_DEFAULT searches the global scope.
    let (acq, rel) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"memscope_lib_lock_acquired".as_ptr()) as usize,
            libc::dlsym(libc::RTLD_DEFAULT, c"memscope_lib_lock_released".as_ptr()) as usize,
        )
    };
    if acq == 0 || rel == 0 {
        return;
    }
    let Some((lo, len)) = object_range(acq) else {
        return;
    };
    LO.store(lo, Relaxed);
    LEN.store(len, Relaxed);
    RELEASED.store(rel, Relaxed);
    // Last: `by_program` says no until the range is known.
    ACQUIRED.store(acq, Relaxed);
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
