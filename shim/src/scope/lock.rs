//! Lock sections: while a thread holds at least one program lock (told by
//! `libmemscope_locks.so`, which interposes pthread's locks, or by the
//! program through `memscope_lock_acquired`/`memscope_lock_released`), it
//! is in the scope `MEMSCOPE_LOCK_SCOPE` names (`report`: none, counting
//! only; `noreclaim`; `noreclaim,nofail`), and what it allocates is
//! counted apart (`stats::locks`).
//!
//! A section composes with explicit scopes as a second, independent
//! source of flags: the flag word holds the pushes' flags ORed with the
//! section's, and `ThreadBss::lock_explicit` the pushes' alone while the
//! section lasts. Pushes and pops inside a section change only those (so
//! a scope pushed before the lock and popped while it is held, or pushed
//! while it is held and popped after its release, leaves the right flags
//! either way); the section's end restores them. `tls::IN_LOCK` sends
//! pushes and pops made inside a section off their fast path, to
//! `push_in_section` and `pop_in_section` (in `scope`, beside the others).
//!
//! The usual case runs in libmemscope_locks.so itself, on this thread's
//! blocks: memscope publishes where they lie (`gate_info`), and both sides
//! run the same code (`memscope_abi::gate`: tracking the locks held, a
//! section begun and ended in a few stores). What the gate leaves to
//! memscope comes here through `memscope_lib_lock_enter` and
//! `memscope_lib_lock_leave`; the C API (`memscope_lock_acquired`,
//! `memscope_lock_released`) comes here for everything (D64).
//!
//! Like push and pop: plain loads and stores on the thread's own blocks
//! once the thread is set up (a section's first NORECLAIM entry on a
//! thread sets it up as a first push does, outside the section's flags);
//! async-signal-safe in the same sense (a handler that takes a lock
//! between the count and the flag word sees the section begun or not).

use core::sync::atomic::{AtomicIsize, AtomicU32, AtomicU8, Ordering::*};

use memscope_abi::gate::{self, GateInfo, Thread, Tracked};

use super::{init, left_noreclaim, section_flags, set_up_noreclaim, NOFAIL, NORECLAIM};
use crate::base::{config::CONFIG, mailbox, tls};
use crate::{pool, stats};

/// What libmemscope_locks.so reads to run sections itself (`gate_info`).
static GATE_INFO: GateInfo = GateInfo {
    version: AtomicU32::new(0),
    size: AtomicU32::new(0),
    flags_at: AtomicIsize::new(0),
    countdowns_at: AtomicIsize::new(0),
    gate_at: AtomicIsize::new(0),
    mode: &CONFIG.lock_scope as *const AtomicU8,
};

/// Where this thread's flag word, countdowns and lock gate lie from the
/// thread pointer: the same in every thread, since the library's TLS is
/// static (`tls`). None where the blocks are not reached that way.
pub fn gate_info() -> Option<&'static GateInfo> {
    let tp = tls::thread_pointer()?;
    let (st, b) = (tls::state(), tls::bss());
    let at = |p: usize| p.wrapping_sub(tp) as isize;
    let i = &GATE_INFO;
    i.flags_at.store(at(&st.flags as *const _ as usize), Relaxed);
    i.countdowns_at
        .store(at(&st.stats.countdown as *const _ as usize), Relaxed);
    i.gate_at.store(at(&b.lock as *const _ as usize), Relaxed);
    i.size.store(core::mem::size_of::<GateInfo>() as u32, Relaxed);
    // Last: a reader that sees the version sees the offsets.
    i.version.store(gate::GATE_VERSION, Release);
    Some(i)
}

/// The calling thread's blocks as the gate sees them.
#[inline(always)]
fn thread() -> Thread<'static> {
    Thread {
        flags: &tls::state().flags,
        countdowns: &tls::state().stats.countdown,
        gate: &tls::bss().lock,
    }
}

/// The calling thread took the program lock `lock` (an address naming
/// it); the call returns to `site`.
#[inline]
pub fn acquired(lock: usize, site: usize) {
    let t = thread();
    match gate::track(t.gate, lock) {
        Tracked::Ignored => {}
        Tracked::First => enter(&t, site),
        Tracked::Nested => {
            if gate::nested_needs_enter(&t) {
                nested(site);
            }
        }
    }
}

/// A lock taken while others are held and no section on
/// (`gate::nested_needs_enter`): a signal handler that landed between the
/// interrupted thread's count of its first lock and its section's flags
/// (it enters the section here; the interrupted `enter` then finds it
/// on), or a thread whose exit hook ran while it held locks. Out of line:
/// the first lock's path stays as short as it was.
#[inline(never)]
fn nested(site: usize) {
    enter(&thread(), site);
}

/// libmemscope_locks.so tracked a lock and left the section to memscope
/// (none on, and not one it could begin itself).
pub fn enter_tracked(site: usize) {
    enter(&thread(), site);
}

/// The calling thread is about to release the program lock `lock`. False
/// if its acquisition was not counted (a lock taken before the count
/// began, one the thread does not hold, or a release that is not the
/// program's): nothing changes then.
#[inline]
pub fn released(lock: usize) -> bool {
    let t = thread();
    match gate::untrack(t.gate, lock) {
        None => false,
        Some(r) => {
            if r.last {
                leave(&t);
            }
            true
        }
    }
}

/// The thread released its last lock: the section ends (also
/// libmemscope_locks.so's call when the end leaves NORECLAIM).
#[inline]
pub fn leave_tracked() {
    leave(&thread());
}

/// True if entering the section's `add` flags first needs setting up: the
/// thread's NORECLAIM set-up, a running maintenance thread (or one that
/// could not start), the process's pool for NOFAIL. Unlike a push's test,
/// not `noreclaim_fast`: the maintenance thread clears that to have the
/// next explicit scope timed, and sections are not timed as scopes (with
/// it, every section after the first harvest took the slow way).
#[inline(always)]
fn needs_setup(st: &tls::ThreadState, add: u32) -> bool {
    add & NORECLAIM != 0
        && (st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed())
        || add & NOFAIL != 0 && !pool::is_ready()
}

/// A section begins. The usual case (the thread seen, its block ready,
/// no set-up needed for the section's flags) is a few loads and stores.
#[inline(always)]
fn enter(t: &Thread<'static>, site: usize) {
    let cur = t.flags.get();
    let add = tls::lock_scope_flags() & !cur;
    if needs_setup(tls::state(), add) || !gate::enter_ready(t, cur, add, site) {
        enter_slow(site);
    }
}

#[cold]
#[inline(never)]
fn enter_slow(site: usize) {
    let st = tls::state();
    let mut cur = st.flags.get();
    if cur & tls::THREAD_UNSEEN != 0 {
        cur = init::thread_first_call();
    }
    if cur & tls::IN_LOCK != 0 {
        return;
    }
    // An exiting thread's later key destructors (after memscope's own
    // exit hook): their sections are counted, into the retired block, but
    // enter no scope.
    let mut add = section_flags(cur) & !cur;
    // Setting up may start a thread, whose glibc calls the exports.
    let caller = st.caller();
    if add & NORECLAIM != 0 {
        if (st.noreclaim_set_up.get() == 0 || !mailbox::is_running() && !mailbox::start_failed())
            && !set_up_noreclaim(st)
        {
            // No pool, or a handler that interrupted its thread's own
            // set-up (`set_up_noreclaim`): the section is counted only,
            // rather than refuse all it asks or wait for itself.
            add &= !(NORECLAIM | NOFAIL);
        }
    } else if add & NOFAIL != 0 && !pool::is_ready() {
        pool::ensure_process_pool();
    }
    st.set_caller(caller);
    stats::locks::section_entered(site);
    gate::begin(&thread(), cur, add);
}

#[inline(always)]
fn leave(t: &Thread<'static>) {
    if let Some((cur, new)) = gate::end(t) {
        left_noreclaim(cur, new);
    }
}
