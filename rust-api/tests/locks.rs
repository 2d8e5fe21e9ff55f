//! `NoReclaimMutex` and `NoReclaimRwLock`: NORECLAIM exactly while a
//! scoped lock is held, in any release order; a failed `try_lock` enters
//! nothing; allocations under the lock are NORECLAIM's (a request larger
//! than any pool block is refused there, served outside); and under a
//! seccomp filter that allows only `write` and the exits, a critical
//! section that allocates makes no syscall, where the same section under a
//! plain parking_lot mutex dies of SIGSYS. Linked as the global allocator,
//! and preloaded (`EXPECT_MEMSCOPE_LOADED=1`: the crate forwards to the
//! library).

mod common;

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;

use common::{allow_only_syscalls, expect_loaded, is_child, run_child};
use memscope::{current, Flags};

#[global_allocator]
static GLOBAL: memscope::Memscope = memscope::Memscope;

type Mutex<T> = memscope::NoReclaimMutex<parking_lot::RawMutex, T>;
type RwLock<T> = memscope::NoReclaimRwLock<parking_lot::RawRwLock, T>;

fn in_noreclaim() -> bool {
    current().contains(Flags::NORECLAIM)
}

#[test]
fn noreclaim_while_held_in_any_release_order() {
    let a = Mutex::new(1u32);
    let b = Mutex::new(2u32);
    let l = RwLock::new(3u32);
    assert!(!in_noreclaim());
    let ga = a.lock();
    assert!(in_noreclaim());
    let gb = b.lock();
    let gr = l.read();
    // Released out of order: the scope lasts until the last one goes.
    drop(ga);
    assert!(in_noreclaim());
    drop(gr);
    assert!(in_noreclaim());
    drop(gb);
    assert!(!in_noreclaim());
    {
        let _w = l.write();
        assert!(in_noreclaim());
    }
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn explicit_scopes_nest_inside_a_held_lock() {
    let m = Mutex::new(());
    let g = m.lock();
    {
        let _s = memscope::nofs();
        assert_eq!(current(), Flags::NORECLAIM | Flags::NOFS);
    }
    assert_eq!(current(), Flags::NORECLAIM);
    drop(g);
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn a_failed_try_lock_enters_nothing() {
    let m = Mutex::new(());
    let held = std::sync::Arc::new(m);
    let other = std::sync::Arc::clone(&held);
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _g = other.lock();
        locked_tx.send(()).unwrap();
        done_rx.recv().unwrap();
    });
    locked_rx.recv().unwrap();
    assert!(held.try_lock().is_none());
    assert_eq!(current(), Flags::NONE);
    done_tx.send(()).unwrap();
    t.join().unwrap();
    let g = held.try_lock().expect("free now");
    assert!(in_noreclaim());
    drop(g);
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn timed_and_fair_variants_follow_the_lock() {
    use std::time::Duration;
    let m = Mutex::new(());
    let g = m.try_lock_for(Duration::from_millis(10)).expect("free");
    assert!(in_noreclaim());
    lock_api::MutexGuard::unlock_fair(g);
    assert_eq!(current(), Flags::NONE);
    let mut g = m.lock();
    // Released and retaken inside: the scope follows (left, entered).
    lock_api::MutexGuard::unlocked(&mut g, || assert_eq!(current(), Flags::NONE));
    assert!(in_noreclaim());
    lock_api::MutexGuard::bump(&mut g);
    assert!(in_noreclaim());
    drop(g);
    let l = RwLock::new(());
    let r = l.try_read_for(Duration::from_millis(10)).expect("free");
    assert!(in_noreclaim());
    drop(r);
    let w = l.try_write_for(Duration::from_millis(10)).expect("free");
    assert!(in_noreclaim());
    drop(w);
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn allocations_under_the_lock_are_noreclaim() {
    // Larger than any pool block (the largest class is 4 MiB): refused
    // inside NORECLAIM, served outside.
    // black_box: an allocation whose only use is a NULL test may be
    // removed by the compiler (and the test taken as false).
    let huge = Layout::from_size_align(64 << 20, 16).unwrap();
    let m = Mutex::new(());
    let inside = {
        let _g = m.lock();
        // SAFETY: non-zero size; freed below with its layout.
        black_box(unsafe { alloc(black_box(huge)) })
    };
    // SAFETY: as above.
    let outside = black_box(unsafe { alloc(black_box(huge)) });
    for p in [inside, outside] {
        if !p.is_null() {
            // SAFETY: allocated above with `huge`.
            unsafe { dealloc(p, huge) };
        }
    }
    assert!(
        inside.is_null(),
        "a 64 MiB request was served under a NORECLAIM lock"
    );
    assert!(!outside.is_null());
}

/// Rust's collections under the lock: allocations and frees of a few
/// sizes, a 2.5 MiB live set at once (more than a cold jemalloc has
/// mapped), and a checksum.
fn section(v: &mut Vec<Box<[u8]>>, rounds: usize) -> u64 {
    let mut sum = 0u64;
    for i in 0..rounds {
        v.push(vec![i as u8; 16 << (i % 8)].into_boxed_slice());
        if v.len() > 64 {
            let b = v.remove(0);
            sum += b[0] as u64;
        }
    }
    let live: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; 128 << 10]).collect();
    sum + live.iter().map(|b| b[100] as u64).sum::<u64>()
}

#[test]
fn a_held_lock_makes_no_syscall() {
    if is_child("a_held_lock_makes_no_syscall") {
        let scoped = std::env::var_os("SCOPED").is_some();
        let scoped_lock = Mutex::new(Vec::new());
        let plain_lock = parking_lot::Mutex::new(Vec::new());
        // Warm: the pool stocked for the live set (small blocks a cold
        // NORECLAIM thread carves itself), the thread set up; a refusal
        // would abort the program.
        memscope::prepare(128 << 10, 40).expect("prepare the live set");
        for _ in 0..5 {
            section(&mut scoped_lock.lock(), 2000);
        }
        allow_only_syscalls(&[libc::SYS_write, libc::SYS_exit, libc::SYS_exit_group]);
        let sum = if scoped {
            section(&mut scoped_lock.lock(), 2000)
        } else {
            section(&mut plain_lock.lock(), 2000)
        };
        // exit_group, not a return: the harness would make syscalls.
        // SAFETY: ending the process.
        unsafe { libc::_exit(if sum > 0 { 0 } else { 3 }) };
    }
    if expect_loaded() {
        // Preloaded, the library's strict proofs run in C (c-tests).
        return;
    }
    let out = run_child("a_held_lock_makes_no_syscall", &[("SCOPED", "1")]);
    assert_eq!(out.status.code(), Some(0), "under a NoReclaimMutex: {out:?}");
    // The control: the same section under a plain parking_lot mutex
    // reaches the OS (jemalloc maps and purges), and dies of SIGSYS.
    let control = run_child("a_held_lock_makes_no_syscall", &[]);
    assert_eq!(
        control.status.signal(),
        Some(libc::SIGSYS),
        "control: {control:?}"
    );
}
