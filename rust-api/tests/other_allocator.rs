//! The case from the field: a program keeps `tikv_jemallocator` as its
//! global allocator and enters memscope scopes, with or without the
//! preload. The scopes cannot act on its allocations; memscope must say
//! so once (and count `scopes_bypassed`) instead of doing nothing silently.

mod common;

use common::{is_child, run_child, BYPASS_LINE};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn scopes_over_another_allocator_are_reported_once() {
    if is_child("scopes_over_another_allocator_are_reported_once") {
        for _ in 0..5 {
            let _s = memscope::noreclaim();
            drop(Box::new([0u8; 100]));
        }
        let _s = memscope::nofail();
        return;
    }
    let out = run_child("scopes_over_another_allocator_are_reported_once", &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines = err.lines().filter(|l| l.contains(BYPASS_LINE)).count();
    assert_eq!(lines, 1, "stderr: {err}");
}
