//! The guard against the real library (run by `make test` twice: plain,
//! and with `LD_PRELOAD=libmemscope.so EXPECT_MEMSCOPE_LOADED=1`).

use memscope_rs::{current, is_loaded, with, Flags, Scope};

fn expect_loaded() -> bool {
    std::env::var_os("EXPECT_MEMSCOPE_LOADED").is_some()
}

#[test]
fn loaded_exactly_when_preloaded() {
    assert_eq!(is_loaded(), expect_loaded());
}

#[test]
fn scopes_nest_and_restore() {
    let on = |f: Flags| if expect_loaded() { f } else { Flags::NONE };
    assert_eq!(current(), Flags::NONE);
    {
        let outer = Scope::enter(Flags::NOFS);
        assert_eq!(outer.saved(), Flags::NONE);
        assert_eq!(current(), on(Flags::NOFS));
        {
            let _inner = Scope::enter(Flags::NORECLAIM | Flags::NOWARN);
            assert_eq!(current(), on(Flags::NOFS | Flags::NORECLAIM | Flags::NOWARN));
            // Allocations inside NORECLAIM work through the system malloc.
            let v: Vec<u64> = (0..10_000).collect();
            assert_eq!(v.iter().sum::<u64>(), 49_995_000);
        }
        assert_eq!(current(), on(Flags::NOFS));
    }
    assert_eq!(current(), Flags::NONE);
    let r = with(Flags::NOIO, current);
    assert_eq!(r, on(Flags::NOIO));
    assert_eq!(current(), Flags::NONE);
}

#[test]
fn scopes_are_per_thread() {
    let _g = Scope::enter(Flags::NOFAIL);
    let other = std::thread::spawn(current).join().unwrap();
    assert_eq!(other, Flags::NONE);
}
