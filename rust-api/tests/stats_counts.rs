//! Every call a Rust program makes through `Memscope` is in its stats
//! segment, exactly: threads that exit within milliseconds, one of them
//! keeping 10,000 blocks made inside `noreclaim()`, one making plain pairs,
//! one whose key destructor allocates after memscope's exit hook.
//! The program counts its own calls (a wrapper around `Memscope`) and
//! compares with the segment once it is quiet. Preloaded as well: the
//! crate then forwards to the library, whose segment it is, and which
//! counts the program's C calls too (at least what the wrapper saw, then).

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{is_child, run_child};
use memscope_abi as abi;

/// `Memscope`, counting each call by operation and context as memscope's
/// stats do (NORECLAIM, else NOFAIL, else normal).
struct Counting;

static CALLS: [[AtomicU64; abi::CONTEXTS]; abi::OPS] =
    [const { [const { AtomicU64::new(0) }; abi::CONTEXTS] }; abi::OPS];

fn note(op: usize) {
    let f = memscope::current();
    let ctx = if f.contains(memscope::Flags::NORECLAIM) {
        abi::CTX_NORECLAIM
    } else if f.contains(memscope::Flags::NOFAIL) {
        abi::CTX_NOFAIL
    } else {
        abi::CTX_NORMAL
    };
    CALLS[op][ctx].fetch_add(1, SeqCst);
}

// SAFETY: every call goes to `Memscope` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(abi::OP_ALLOC);
        // SAFETY: the caller's contract.
        unsafe { memscope::Memscope.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(abi::OP_ALLOC);
        // SAFETY: the caller's contract.
        unsafe { memscope::Memscope.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(abi::OP_FREE);
        // SAFETY: the caller's contract.
        unsafe { memscope::Memscope.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(abi::OP_REALLOC);
        // SAFETY: the caller's contract.
        unsafe { memscope::Memscope.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted() -> [[u64; abi::CONTEXTS]; abi::OPS] {
    let mut t = [[0; abi::CONTEXTS]; abi::OPS];
    for (op, row) in t.iter_mut().enumerate() {
        for (ctx, v) in row.iter_mut().enumerate() {
            *v = CALLS[op][ctx].load(SeqCst);
        }
    }
    t
}

/// This process's segment, mapped read-only (found by name in
/// `MEMSCOPE_STATS_DIR`, which the parent sets).
fn segment() -> *const u8 {
    let dir = std::env::var("MEMSCOPE_STATS_DIR").expect("MEMSCOPE_STATS_DIR");
    let path = format!("{dir}/{}{}\0", abi::FILE_PREFIX, std::process::id());
    // SAFETY: a NUL-terminated path; a read-only shared mapping of the
    // whole segment, kept for the life of the process.
    unsafe {
        let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY);
        assert!(fd >= 0, "no segment at {path}");
        let p = libc::mmap(
            std::ptr::null_mut(),
            abi::SEGMENT_SIZE,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::close(fd);
        p.cast()
    }
}

/// Calls over every slot (threads, retired, overflow), and the retired
/// slot's thread count.
fn in_segment(base: *const u8) -> ([[u64; abi::CONTEXTS]; abi::OPS], u64) {
    let mut t = [[0; abi::CONTEXTS]; abi::OPS];
    let mut retired = 0;
    for i in 0..abi::SLOT_TOTAL {
        // SAFETY: slot `i` of the mapped segment (its layout is the ABI's).
        let slot = unsafe { &*(base.add(abi::HEADER_SIZE + i * abi::SLOT_SIZE) as *const abi::Slot) };
        if i == abi::SLOT_RETIRED {
            retired = slot.threads.load(SeqCst);
        }
        for (op, row) in t.iter_mut().enumerate() {
            for (ctx, v) in row.iter_mut().enumerate() {
                *v += slot.ops[op][ctx].load(SeqCst);
            }
        }
    }
    (t, retired)
}

const BLOCKS: usize = 10_000;

extern "C" fn key_destructor(_: *mut libc::c_void) {
    for i in 0..100u64 {
        std::hint::black_box(Box::new(i));
    }
}

fn child() {
    // The pool and the maintenance thread first (the process's first
    // scope makes them).
    drop(memscope::noreclaim());
    let kept = std::thread::spawn(|| {
        let mut held: Vec<(*mut u8, Layout)> = Vec::with_capacity(BLOCKS);
        {
            let _s = memscope::noreclaim();
            for i in 0..BLOCKS {
                let layout = Layout::from_size_align(32 + i % 2000, 8).unwrap();
                // A cold pool refuses some (NULL): calls all the same.
                // SAFETY: a non-zero size.
                held.push((unsafe { std::alloc::alloc(layout) }, layout));
            }
        }
        held.iter().filter(|(p, _)| !p.is_null()).count()
    });
    let served = kept.join().unwrap();
    let plain = std::thread::spawn(|| {
        for i in 0..BLOCKS {
            std::hint::black_box(Box::new([i as u8; 48]));
        }
    });
    plain.join().unwrap();
    // A thread that lives on detached, exiting within milliseconds.
    std::thread::spawn(|| {
        for i in 0..BLOCKS {
            std::hint::black_box(vec![i as u8; 100]);
        }
    });
    // A thread whose key destructor (a C library's, say) allocates: it
    // runs after memscope's exit hook, whose key is older.
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: a valid out-pointer and an extern "C" destructor.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(key_destructor)) },
        0
    );
    std::thread::spawn(move || {
        // SAFETY: a live key; any non-NULL value makes the destructor run.
        unsafe { libc::pthread_setspecific(key, std::ptr::dangling::<libc::c_void>()) };
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let base = segment();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // This thread's plain calls reach its slot at a flush; the
        // maintenance thread's within a harvest (40 ms).
        memscope::flush();
        let before = counted();
        let (seen, retired) = in_segment(base);
        let after = counted();
        // Preloaded, the library counts the C code's calls too (glibc's
        // own, on every thread's exit), which the wrapper does not see.
        let matches = if common::expect_loaded() {
            (0..abi::OPS).all(|op| (0..abi::CONTEXTS).all(|ctx| seen[op][ctx] >= after[op][ctx]))
                && seen[abi::OP_ALLOC][abi::CTX_NORECLAIM] == after[abi::OP_ALLOC][abi::CTX_NORECLAIM]
        } else {
            seen == after
        };
        if before == after && matches {
            assert_eq!(after[abi::OP_ALLOC][abi::CTX_NORECLAIM], BLOCKS as u64);
            assert!(retired >= 4, "{retired} threads retired");
            println!("exact: {seen:?}, {served} of {BLOCKS} served in NORECLAIM");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the segment's counts {seen:?} differ from the calls made {after:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_call_of_short_lived_threads_is_counted() {
    const NAME: &str = "every_call_of_short_lived_threads_is_counted";
    if is_child(NAME) {
        return child();
    }
    let dir = std::env::temp_dir().join(format!("memscope-stats-counts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = run_child(NAME, &[("MEMSCOPE_STATS_DIR", dir.to_str().unwrap())]);
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("exact: "),
        "child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
}
