//! `Memscope` as the global allocator, with no preload: NORECLAIM holds
//! under a seccomp filter that allows no syscall at all; no bypass is
//! reported. Preloaded as well (`EXPECT_MEMSCOPE_LOADED=1`): the crate
//! forwards to the library and says so once.

mod common;

use std::collections::BTreeMap;

use common::{allow_only_syscalls, expect_loaded, is_child, run_child, BYPASS_LINE, FORWARD_LINE};

#[global_allocator]
static GLOBAL: memscope::Memscope = memscope::Memscope;

/// Rust's own collections, allocating and freeing in a mix of sizes
/// (16 B to 256 KiB) and a 2.5 MiB live set, with a checksum so nothing is
/// optimised away.
fn workload(rounds: usize) -> u64 {
    let mut sum = 0u64;
    let mut map = BTreeMap::new();
    for i in 0..rounds {
        let v: Vec<u8> = vec![i as u8; 16 << (i % 15)];
        sum += v[v.len() - 1] as u64;
        let mut s = String::with_capacity(8);
        for _ in 0..(i % 40) {
            s.push('x');
        }
        map.insert(i % 97, s);
        if i % 3 == 0 {
            map.remove(&((i * 7) % 97));
        }
        let b = Box::new([i as u64; 8]);
        sum += b[7];
    }
    // A live set of 2.5 MiB at once: more than a cold jemalloc has mapped.
    let live: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8; 128 << 10]).collect();
    sum += live.iter().map(|v| v[100] as u64).sum::<u64>();
    sum + map.len() as u64
}

/// Warms NORECLAIM for `workload`, as a program should before its scopes
/// matter: a cold pool refuses what it has not stocked yet (and Rust
/// aborts on a refusal), so ask with raw allocations, which may fail,
/// until a whole round is served; the maintenance thread stocks each
/// class from the demand it saw.
fn warm_noreclaim() {
    use std::alloc::{alloc, dealloc, Layout};
    let mut sizes: Vec<(usize, usize)> = (0..15).map(|k| (16usize << k, 2)).collect();
    sizes.extend([(8, 4), (32, 4), (64, 8), (400, 8), (800, 4), (128 << 10, 22)]);
    for _round in 0..200 {
        let mut refused = 0;
        let mut held = Vec::with_capacity(128);
        {
            let _s = memscope::noreclaim();
            for &(size, count) in &sizes {
                let layout = Layout::from_size_align(size, 8).unwrap();
                for _ in 0..count {
                    // SAFETY: non-zero size; freed below with its layout.
                    let p = unsafe { alloc(layout) };
                    if p.is_null() {
                        refused += 1;
                    } else {
                        held.push((p, layout));
                    }
                }
            }
            for (p, layout) in held.drain(..) {
                // SAFETY: allocated above with `layout`.
                unsafe { dealloc(p, layout) };
            }
        }
        if refused == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("NORECLAIM still refused after 200 warm-up rounds");
}

/// Only these: write (the test harness's output), the exits.
fn strict_filter() {
    allow_only_syscalls(&[libc::SYS_write, libc::SYS_exit, libc::SYS_exit_group]);
}

#[test]
fn noreclaim_makes_no_syscall() {
    if is_child("noreclaim_makes_no_syscall") {
        let scoped = std::env::var_os("SCOPED").is_some();
        let mut want = 0;
        if scoped {
            warm_noreclaim();
            let _s = memscope::noreclaim();
            want = workload(2000);
        }
        // The control runs cold (its first mmap is fatal); the scoped run
        // must make no syscall at all.
        let s = scoped.then(memscope::noreclaim);
        strict_filter();
        let got = workload(2000);
        drop(s);
        let want = if scoped { want } else { got };
        // exit_group, not a return: the harness would make syscalls.
        // SAFETY: ending the process.
        unsafe { libc::_exit(if got == want { 0 } else { 3 }) };
    }
    if expect_loaded() {
        return; // the preloaded library's own strict tests cover that case
    }
    let out = run_child("noreclaim_makes_no_syscall", &[("SCOPED", "1")]);
    assert_eq!(out.status.code(), Some(0), "in NORECLAIM: {out:?}");
    // The control: the same work outside any scope dies of SIGSYS.
    let control = run_child("noreclaim_makes_no_syscall", &[]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        control.status.signal(),
        Some(libc::SIGSYS),
        "control: {control:?}"
    );
}

/// A cold process, no warm-up: Rust's first NORECLAIM allocations of
/// every shape are served (a scoped thread carves from committed pool
/// memory what the depot has not stocked yet; a refusal would abort the
/// program) under a filter that allows no syscall. Then
/// `memscope::prepare` stocks a live set larger than the default
/// headroom left after the cold run, served in full as well.
#[test]
fn cold_noreclaim_is_served_and_prepare_stocks() {
    if is_child("cold_noreclaim_is_served_and_prepare_stocks") {
        assert!(memscope::prepare(0, 1).is_err());
        {
            let _s = memscope::noreclaim();
            assert_eq!(
                memscope::prepare(64, 1).map_err(|e| e.kind()),
                Err(std::io::ErrorKind::InvalidInput)
            );
        }
        memscope::prepare(256 << 10, 160).expect("prepare 40 MiB of 256 KiB blocks");
        let s = memscope::noreclaim();
        strict_filter();
        let got = workload(2000);
        let live: Vec<Vec<u8>> = (0..160).map(|i| vec![i as u8; 256 << 10]).collect();
        let ok = live.iter().enumerate().all(|(i, v)| v[v.len() - 1] == i as u8);
        drop(live);
        drop(s);
        // SAFETY: ending the process (no harness syscalls).
        unsafe { libc::_exit(if got > 0 && ok { 0 } else { 3 }) };
    }
    if expect_loaded() {
        return; // the preloaded library's C tests cover that case
    }
    let out = run_child("cold_noreclaim_is_served_and_prepare_stocks", &[]);
    assert_eq!(out.status.code(), Some(0), "cold NORECLAIM: {out:?}");
}

#[test]
fn scopes_are_served_and_no_bypass_is_reported() {
    if is_child("scopes_are_served_and_no_bypass_is_reported") {
        warm_noreclaim();
        let _s = memscope::noreclaim();
        assert_eq!(workload(100), workload(100));
        return;
    }
    let out = run_child("scopes_are_served_and_no_bypass_is_reported", &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(BYPASS_LINE), "stderr: {err}");
    // Preloaded as well: one allocator, said once.
    let forwards = err.lines().filter(|l| l.contains(FORWARD_LINE)).count();
    assert_eq!(forwards, usize::from(expect_loaded()), "stderr: {err}");
}

/// Every alignment and size through `alloc`, `alloc_zeroed`, `realloc`
/// and `dealloc`, outside scopes (must be served) and inside NORECLAIM
/// (may be refused when the pool has no block of that class ready; when
/// served, held to the same promises).
#[test]
fn alignment_and_realloc_keep_their_promises() {
    use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
    for align in [1usize, 2, 4, 8, 16, 32, 64, 4096, 1 << 16, 1 << 21] {
        for size in [1usize, 7, 16, 100, 4096, 70_000] {
            for scoped in [false, true] {
                let _s = scoped.then(memscope::noreclaim);
                let what = format!("size {size} align {align} scoped {scoped}");
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block freed with its layout.
                unsafe {
                    let p = if size % 2 == 0 {
                        alloc_zeroed(layout)
                    } else {
                        alloc(layout)
                    };
                    if p.is_null() {
                        assert!(scoped, "{what}: NULL outside a scope");
                        continue;
                    }
                    assert_eq!(p as usize % align, 0, "{what}");
                    if size % 2 == 0 {
                        assert!(
                            std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0),
                            "{what}: not zeroed"
                        );
                    }
                    p.write_bytes(0xa5, size);
                    let q = realloc(p, layout, size * 3);
                    if q.is_null() {
                        assert!(scoped, "{what}: realloc NULL outside a scope");
                        dealloc(p, layout);
                        continue;
                    }
                    assert_eq!(q as usize % align, 0, "{what}: realloc");
                    assert!(
                        std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0xa5),
                        "{what}: realloc lost data"
                    );
                    dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                }
            }
        }
    }
}
