//! The guards with Rust's default allocator (the system `malloc`). `make
//! test` runs this twice: plain (scopes act on the linked copy, which
//! serves nothing here: memscope says so) and with
//! `LD_PRELOAD=libmemscope.so EXPECT_MEMSCOPE_LOADED=1` (the system
//! allocator's calls reach the preloaded `malloc`: scopes act).

mod common;

use common::{expect_loaded, is_child, run_child, BYPASS_LINE, FORWARD_LINE};
use memscope::{current, is_loaded, with, Flags, Needs, Reclaimer, Scope};

#[test]
fn loaded_exactly_when_preloaded() {
    assert_eq!(is_loaded(), expect_loaded());
}

#[test]
fn version_is_the_crates() {
    let v = memscope::version();
    assert_eq!(v >> 16, env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap());
    assert_eq!(
        (v >> 8) & 0xff,
        env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap()
    );
    assert_eq!(v & 0xff, env!("CARGO_PKG_VERSION_PATCH").parse::<u32>().unwrap());
}

#[test]
fn scopes_nest_and_restore() {
    assert_eq!(current(), Flags::NONE);
    {
        let outer = Scope::enter(Flags::NOFS);
        assert_eq!(outer.saved(), Flags::NONE);
        assert_eq!(current(), Flags::NOFS);
        {
            let _inner = memscope::noreclaim();
            assert_eq!(current(), Flags::NOFS | Flags::NORECLAIM);
            let v: Vec<u64> = (0..10_000).collect();
            assert_eq!(v.iter().sum::<u64>(), 49_995_000);
        }
        assert_eq!(current(), Flags::NOFS);
    }
    assert_eq!(current(), Flags::NONE);
    assert_eq!(with(Flags::NOIO, current), Flags::NOIO);
    assert_eq!(current(), Flags::NONE);
    for (g, f) in [
        (memscope::nofail as fn() -> Scope, Flags::NOFAIL),
        (memscope::nowarn, Flags::NOWARN),
        (memscope::nofs, Flags::NOFS),
        (memscope::noio, Flags::NOIO),
    ] {
        let s = g();
        assert_eq!(current(), f);
        drop(s);
    }
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn scopes_are_per_thread() {
    let _g = Scope::enter(Flags::NOFAIL);
    let other = std::thread::spawn(current).join().unwrap();
    assert_eq!(other, Flags::NONE);
    assert_eq!(current(), Flags::NOFAIL);
}

#[test]
fn reclaimers_register_up_to_the_table_and_unregister_on_drop() {
    let mut held = Vec::new();
    while let Some(r) = Reclaimer::register("t", Needs::FS | Needs::IO, |want| want) {
        held.push(r);
        assert!(held.len() <= 64, "more than 64 reclaimers registered");
    }
    assert!(held.len() > 32, "only {} reclaimers registered", held.len());
    let n = held.len();
    held.clear();
    // Every slot is free again.
    let again: Vec<_> = (0..n)
        .map(|_| Reclaimer::register("again", Needs::NONE, |_| 0).expect("slot freed by drop"))
        .collect();
    drop(again);
}

/// The system allocator with no library loaded: the scopes act on the
/// linked copy, which serves nothing: one line, once. Preloaded: the
/// allocations reach memscope, no line.
#[test]
fn a_bypassed_scope_is_reported_once() {
    if is_child("a_bypassed_scope_is_reported_once") {
        for _ in 0..3 {
            let _s = memscope::noreclaim();
            drop(Box::new(1u64));
        }
        drop(memscope::nofail());
        return;
    }
    let out = run_child("a_bypassed_scope_is_reported_once", &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err.lines().filter(|l| l.contains(BYPASS_LINE)).count();
    assert_eq!(lines, usize::from(!expect_loaded()), "stderr: {err}");
    let forwards = err.lines().filter(|l| l.contains(FORWARD_LINE)).count();
    assert_eq!(forwards, usize::from(expect_loaded()), "stderr: {err}");
}
