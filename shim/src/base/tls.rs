//! Every piece of per-thread state, in one place: the block read on every
//! allocator call (`ThreadState`, initial-exec TLS, `.tdata`) and the one
//! only NORECLAIM threads touch (`ThreadBss`, `.tbss`), with the layouts
//! of what they hold (scope flags, counting state, magazines, the deferred
//! frees). The logic that uses each part lives in its own module; the
//! thread's life (first call, exit, fork) is in `init`.
//!
//! Rust's `thread_local!` in a cdylib compiles to the general-dynamic model,
//! a call to `__tls_get_addr` on every access (about 2 ns per malloc+free
//! pair here, see docs/DESIGN.md). The fast path must be one decrement and
//! a branch, so on x86_64 Linux the block is defined in assembly in
//! `.tdata` and reached through its initial-exec GOT offset (`@GOTTPOFF`)
//! off `%fs`. Elsewhere a const `thread_local!` stands in: correct, a
//! little slower.
//!
//! Consequence: the library must be loaded at start-up (`LD_PRELOAD` or
//! `DT_NEEDED`), which is what an allocator needs anyway; a `dlopen` of it
//! would run on glibc's small static-TLS surplus.
//!
//! Rule: everything here is plain loads and stores; nothing allocates.

use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{compiler_fence, AtomicU32, Ordering::SeqCst};

use memscope_abi::gate::{self, LockGate};
use memscope_abi::{CONTEXTS, OPS};

/// The scope flags (`MEMSCOPE_*` in `memscope.h`), kept in
/// `ThreadState::flags`. Defined here, with the word that holds them, so
/// that every layer can read a thread's context without importing the
/// scope logic (`scope`).
pub const NORECLAIM: u32 = 0x01;
pub const NOWARN: u32 = 0x02;
pub const NOFAIL: u32 = 0x04;
pub const NOFS: u32 = 0x08;
pub const NOIO: u32 = 0x10;
/// Every flag the API knows.
pub const ALL: u32 = NORECLAIM | NOWARN | NOFAIL | NOFS | NOIO;

/// Set in every new thread's initial image: the thread has not been seen.
/// Its countdowns start at 0, so its first call fails `gate` and the slow
/// path, seeing this bit, runs `init::thread_first_call` once.
pub const THREAD_UNSEEN: u32 = gate::THREAD_UNSEEN;

/// Set by the thread's exit hook (`init::on_thread_exit`) and kept for the
/// rest of its life, its countdowns biased as in a scope: every later call
/// (the program's own key destructors run after ours, glibc frees after
/// them all) takes the slow path, which counts it straight into the
/// retired slot, and gives pool blocks back to the depot, not to lists
/// nobody will drain again. Never a scope flag: `ALL` excludes it.
pub const THREAD_EXITED: u32 = gate::THREAD_EXITED;

/// Marks a `ThreadState::ring` entry whose scope is being timed (never a
/// flag; see `scope` and `stats::thread`'s scope durations).
pub const SCOPE_TIMED: u32 = 1 << 29;

/// Set while the thread holds at least one program lock (a lock section:
/// `scope::lock`), in every `MEMSCOPE_LOCK_SCOPE` mode: the countdowns
/// are biased as in a scope, so that the section's calls take the slow
/// path and are counted there (`stats::locks`). Never a scope flag.
pub const IN_LOCK: u32 = gate::IN_LOCK;

/// The flags a lock section enters (`MEMSCOPE_LOCK_SCOPE`): none for
/// `report`.
#[inline(always)]
pub fn lock_scope_flags() -> u32 {
    u32::from(
        crate::base::config::CONFIG
            .lock_scope
            .load(core::sync::atomic::Ordering::Relaxed),
    )
}

// The flag word's layout the locks library reads (`memscope_abi::gate`).
const _: () = {
    assert!(gate::SCOPE_FLAGS == ALL);
    assert!(gate::NORECLAIM == NORECLAIM);
};

const _: () = {
    use crate::base::config::{LOCK_SCOPE_NORECLAIM, LOCK_SCOPE_NORECLAIM_NOFAIL, LOCK_SCOPE_REPORT};
    assert!(LOCK_SCOPE_REPORT == 0);
    assert!(LOCK_SCOPE_NORECLAIM as u32 == NORECLAIM);
    assert!(LOCK_SCOPE_NORECLAIM_NOFAIL as u32 == NORECLAIM | NOFAIL);
};

/// Depth of the push/pop ring used to check that pops match pushes.
pub const SCOPE_RING: usize = 16;

/// The calling thread's allocator state. Zero (but for `flags`) is valid.
#[repr(C)]
pub struct ThreadState {
    /// Scope flags (`MEMSCOPE_*`) in the low bits, `THREAD_UNSEEN` and
    /// `THREAD_EXITED` on top.
    /// Zero means: plain jemalloc. Whenever it holds scope flags, the
    /// countdowns in `stats` are biased negative (`stats::thread::bias`):
    /// that, not this word, is what keeps scoped calls off the fast path.
    pub flags: Cell<u32>,
    /// Number of pushes not yet popped (saturating).
    pub depth: Cell<u32>,
    /// Non-zero while a push entering NORECLAIM may take the fast path:
    /// the thread is set up and no scope timing is armed. The maintenance
    /// thread zeroes it to have the thread's next scope timed (see
    /// `stats::thread`), hence atomic; the push's slow path sets it again.
    pub noreclaim_fast: AtomicU32,
    /// Non-zero once this thread is set up for NORECLAIM (`scope`): its
    /// lists touched, its jemalloc state made, its exit hook registered.
    pub noreclaim_set_up: Cell<u32>,
    /// Non-zero once the thread's exit hook is registered because its
    /// lists hold pool blocks it freed outside NORECLAIM.
    pub lists_exit_hook: Cell<u32>,
    /// Set while this thread runs reclaimers or maintenance work, so that
    /// nothing re-enters reclaim from inside.
    pub in_reclaim: Cell<u32>,
    /// The stack pointer and frame pointer at the entry of the thread's
    /// latest allocator call (or push) that may record a call site, stored
    /// by the exported function's first instructions (`entry::exports`):
    /// the call site is the return address at `caller_sp`, its callers are
    /// found from `caller_fp` (`stats::sites`). Two stores, where walking
    /// memscope's own frames needed every function built with frame
    /// pointers (docs/DECISIONS.md, D55). 0 before any such call, and
    /// always in a program that links memscope as its Rust allocator.
    pub caller_sp: Cell<usize>,
    pub caller_fp: Cell<usize>,
    /// The thread's counts and its stats slot (`stats::thread`). Its
    /// countdowns come first, on the flag word's cache line.
    pub stats: ThreadStats,
    /// The `saved` values of the innermost pushes, to check pops.
    pub ring: [Cell<u32>; SCOPE_RING],
}

/// Where the thread's latest exported call was entered from
/// (`ThreadState::caller_sp`, `caller_fp`): kept across work that may call
/// the exports itself (glibc starting a thread, a reclaimer), so that what
/// the call records afterwards names the call's own site.
#[derive(Clone, Copy)]
pub struct Caller(usize, usize);

impl ThreadState {
    #[inline(always)]
    pub fn caller(&self) -> Caller {
        Caller(self.caller_sp.get(), self.caller_fp.get())
    }

    #[inline(always)]
    pub fn set_caller(&self, c: Caller) {
        self.caller_sp.set(c.0);
        self.caller_fp.set(c.1);
    }
}

/// `ThreadStats::mode` before the thread's first call.
pub const MODE_UNSTARTED: u32 = 0;

/// A thread's counting state (`stats::thread` works on it), part of
/// `ThreadState`. `ZERO` is the initial state.
#[repr(C)]
pub struct ThreadStats {
    /// Fast-path calls left before the next timed one, per operation: the
    /// call that finds it at 0 is timed, and it is rearmed to `armed - 1`.
    /// Decremented by `tls::gate`; minus `memscope_abi::gate::SCOPE_BIAS` in a scope. All
    /// zero in a new thread, so that its first call takes the slow path.
    pub countdown: [Cell<u64>; OPS],
    /// Fast-path calls accounted by samples already taken.
    pub(crate) credited: [Cell<u64>; OPS],
    /// The current sampling interval per operation.
    pub(crate) armed: [Cell<u64>; OPS],
    /// The next warm-up interval per operation (1 at thread start,
    /// doubling up to the period), or 0 once warmed up: from then on
    /// intervals are random.
    pub(crate) warm: [Cell<u64>; OPS],
    /// Calls counted on the slow path, per operation and context.
    pub(crate) slow: [[Cell<u64>; CONTEXTS]; OPS],
    /// Slow-path calls left until the next timed one, per operation and
    /// context (one countdown per operation timed only the context that
    /// came last in a periodic pattern, and hid the others).
    pub(crate) slow_countdown: [[Cell<u64>; CONTEXTS]; OPS],
    pub(crate) slow_warm: [[Cell<u64>; CONTEXTS]; OPS],
    /// xorshift state for the random intervals (0: not seeded).
    pub(crate) rng: Cell<u64>,
    /// Odd while the owner rewrites `credited`/`armed`/`countdown` together
    /// (a sample): the harvester retries rather than read them torn.
    pub(crate) gen: Cell<u64>,
    /// The thread's slot (address), or 0, and its index.
    pub(crate) slot: Cell<usize>,
    pub(crate) slot_index: Cell<usize>,
    pub(crate) mode: Cell<u32>,
    /// What has been added to an aggregate slot so far (overflow threads,
    /// and a thread after its exit fold).
    pub(crate) added: [[Cell<u64>; CONTEXTS]; OPS],
    pub(crate) added_bytes: [Cell<u64>; 2],
    /// jemalloc's per-thread byte counters (`thread.allocatedp`,
    /// `thread.deallocatedp`), or 0.
    pub(crate) allocatedp: Cell<usize>,
    pub(crate) deallocatedp: Cell<usize>,
}

impl ThreadStats {
    pub const COUNTDOWN_OFFSET: usize = core::mem::offset_of!(ThreadStats, countdown);

    /// The initial state (a const: the non-x86 TLS block is built from it;
    /// on x86_64 Linux the block's initial image is all zero, and the
    /// thread's first call sets these words in `stats::thread::start`).
    #[allow(clippy::declare_interior_mutable_const)]
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    pub const ZERO: ThreadStats = ThreadStats {
        countdown: [const { Cell::new(0) }; OPS],
        credited: [const { Cell::new(0) }; OPS],
        armed: [const { Cell::new(1) }; OPS],
        warm: [const { Cell::new(1) }; OPS],
        slow: [const { [const { Cell::new(0) }; CONTEXTS] }; OPS],
        slow_countdown: [const { [const { Cell::new(0) }; CONTEXTS] }; OPS],
        slow_warm: [const { [const { Cell::new(1) }; CONTEXTS] }; OPS],
        rng: Cell::new(0),
        gen: Cell::new(0),
        slot: Cell::new(0),
        slot_index: Cell::new(0),
        mode: Cell::new(MODE_UNSTARTED),
        added: [const { [const { Cell::new(0) }; CONTEXTS] }; OPS],
        added_bytes: [const { Cell::new(0) }; 2],
        allocatedp: Cell::new(0),
        deallocatedp: Cell::new(0),
    };
}

// What the assembly below reads: the flag word at the block's start (the
// initial image stores `THREAD_UNSEEN` there) and the countdowns at the
// offsets `gate` computes.
const _: () = assert!(core::mem::offset_of!(ThreadState, flags) == 0);
const _: () = assert!(core::mem::size_of::<Cell<u32>>() == 4);
const _: () = assert!(countdown_offset(1) == countdown_offset(0) + 8);

/// A thread's free lists of pool blocks (`magazine` works on them), one
/// per size class (`sizeclass`). All zero is empty.
#[repr(C)]
pub struct Magazines {
    /// First free block of each list (linked through first words), or 0.
    pub(crate) head: [Cell<usize>; crate::base::sizeclass::COUNT],
    pub(crate) len: [Cell<u32>; crate::base::sizeclass::COUNT],
    /// A full chain kept beside each list (its first block, or 0), so a
    /// list that fills swaps lists instead of walking one to cut a chain.
    pub(crate) spare: [Cell<usize>; crate::base::sizeclass::COUNT],
    pub(crate) spare_len: [Cell<u32>; crate::base::sizeclass::COUNT],
    /// Blocks the next refill of each list keeps (slow start).
    pub(crate) allowance: [Cell<u32>; crate::base::sizeclass::COUNT],
    /// The depot's recall count when this thread last gave its lists back.
    pub(crate) epoch: Cell<u32>,
    /// The pool's committed bytes read just before this thread's last
    /// carve that failed: what a refusal is judged against (the pool may
    /// have grown by the time it is counted).
    pub(crate) refused_at_committed: Cell<usize>,
}

/// Frees of non-pool blocks deferred by a NORECLAIM thread, linked through
/// the blocks' first words, not yet handed to the maintenance thread
/// (`mailbox`). All zero is empty.
#[repr(C)]
pub struct Deferred {
    pub(crate) head: usize,
    pub(crate) tail: usize,
    pub(crate) len: usize,
    pub(crate) bytes: usize,
}

/// The per-thread state only NORECLAIM threads touch, in `.tbss`: zero at
/// thread start, copied by nobody, faulted in by a thread's first
/// NORECLAIM push (`magazine::touch`, `mailbox::touch_thread_buffer`).
#[repr(C)]
pub struct ThreadBss {
    pub magazines: Magazines,
    /// The thread's deferred frees not yet handed off (only this thread
    /// touches it, inside `enter_lists`).
    pub deferred: UnsafeCell<Deferred>,
    /// Non-zero while this thread is inside an operation on its lists or
    /// its deferred frees (`enter_lists`).
    pub busy: Cell<u32>,
    /// Timed NORECLAIM allocations left until the next recorded one (0:
    /// draw), and the xorshift state that draws the intervals
    /// (`stats::sites::noreclaim_call`).
    pub site_left: Cell<u32>,
    pub site_rng: Cell<u32>,
    /// While a timed NORECLAIM scope lasts, where it was pushed
    /// (`stats::sites`): return addresses, how many. Here, not in
    /// `ThreadState`: that block's size places jemalloc's thread data after
    /// it, and 40 more bytes there made every plain malloc+free pair 2 ns
    /// slower (docs/DECISIONS.md, D54).
    pub scope_site: [Cell<u64>; memscope_abi::SITE_FRAMES],
    pub scope_site_depth: Cell<u32>,
    /// While a timed NORECLAIM scope lasts, its start in ticks; else 0
    /// (`stats::thread`).
    pub scope_t0: Cell<u64>,
    /// The reclaimer (id) this thread is running, or 0, so that
    /// unregistering from inside the callback does not wait for itself.
    /// Here, like `scope_t0`, to leave `ThreadState` its size (above).
    pub running_reclaimer: Cell<usize>,
    /// Non-zero while this thread makes (or is about to make) the process's
    /// pool: a signal handler on it must not wait for the pool
    /// (`pool::ensure_process_pool`).
    pub making_pool: Cell<u32>,
    /// Non-zero while this thread sets itself up for NORECLAIM
    /// (`scope::set_up_noreclaim`): what it allocates meanwhile is
    /// memscope's own, not counted under a program lock.
    pub in_setup: Cell<u32>,
    /// Lock sections (`scope::lock`, `stats::locks`): the locks the
    /// thread holds, the section's site and counts. Its layout is shared
    /// with libmemscope_locks.so, which runs the usual sections itself
    /// (`memscope_abi::gate`, `scope::lock::GATE_INFO`).
    pub lock: LockGate,
}

/// Marks this thread's lists (magazines, deferred frees) busy for one
/// operation, or returns None if they are busy already: the caller is a
/// signal handler that interrupted the thread's own list operation, and
/// must leave the lists alone (plain loads and stores, half done
/// underneath it); it takes a lock-free way round instead. A signal
/// landing between the test and the store runs to completion before the
/// store; the compiler fences keep the lists' loads and stores between
/// the flag's two stores.
#[inline(always)]
pub fn enter_lists() -> Option<ListsBusy> {
    let b = &bss().busy;
    if b.get() != 0 {
        return None;
    }
    b.set(1);
    compiler_fence(SeqCst);
    Some(ListsBusy(()))
}

/// The lists are this thread's until this is dropped (`enter_lists`).
pub struct ListsBusy(());

impl Drop for ListsBusy {
    #[inline(always)]
    fn drop(&mut self) {
        compiler_fence(SeqCst);
        bss().busy.set(0);
    }
}

/// Byte offset of `stats.countdown[op]` in the block, for `gate`.
pub const fn countdown_offset(op: usize) -> usize {
    core::mem::offset_of!(ThreadState, stats) + ThreadStats::COUNTDOWN_OFFSET + op * 8
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::ThreadState;

    core::arch::global_asm!(
        ".pushsection .tdata,\"awT\",@progbits",
        ".p2align 6",
        // Global (so that every object of a multi-unit build finds it)
        // and hidden (so that it is not exported from the library).
        ".globl memscope_thread_state",
        ".hidden memscope_thread_state",
        ".type memscope_thread_state,@object",
        ".size memscope_thread_state, {size}",
        "memscope_thread_state:",
        ".long {unseen}",
        ".zero {rest}",
        ".popsection",
        size = const core::mem::size_of::<ThreadState>(),
        unseen = const super::THREAD_UNSEEN,
        rest = const core::mem::size_of::<ThreadState>() - 4,
    );

    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 6",
        ".globl memscope_thread_bss",
        ".hidden memscope_thread_bss",
        ".type memscope_thread_bss,@object",
        ".size memscope_thread_bss, {size}",
        "memscope_thread_bss:",
        ".zero {size}",
        ".popsection",
        size = const core::mem::size_of::<super::ThreadBss>(),
    );

    /// The calling thread's `.tbss` block.
    #[inline(always)]
    pub fn bss() -> &'static super::ThreadBss {
        let p: *const super::ThreadBss;
        // SAFETY: as `state`: this thread's block, at its TP offset.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + memscope_thread_bss@GOTTPOFF]",
                p = out(reg) p,
                options(nostack, pure, readonly),
            );
            &*p
        }
    }

    /// The calling thread's flag word: two loads, no call.
    #[inline(always)]
    pub fn flags() -> u32 {
        let v: u32;
        // SAFETY: reads this thread's own TLS block through its
        // initial-exec offset; the block exists in every thread's static
        // TLS for as long as the thread runs.
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                "mov {v:e}, dword ptr fs:[{off}]",
                off = out(reg) _,
                v = out(reg) v,
                options(nostack, readonly, preserves_flags),
            );
        }
        v
    }

    /// The entry points' gate: true for the fast path. One decrement of
    /// operation `OP`'s countdown and a branch on its sign: it counts the
    /// call, and goes negative when the countdown runs out (this call is
    /// the one in `MEMSCOPE_STATS_SAMPLE` to time) or when the thread is
    /// in a scope (pushes bias the countdowns by `memscope_abi::gate::SCOPE_BIAS`). The flag
    /// word is not read: a load, an `adc` and a test fewer than checking it
    /// beside the countdown, 0.8 ns per malloc+free pair on Intel
    /// (docs/BENCHMARKS.md).
    #[inline(always)]
    pub fn gate<const OP: usize>() -> bool {
        let off: usize;
        // SAFETY: reads the block's initial-exec TP offset from the GOT,
        // then decrements this thread's own countdown in its static TLS.
        unsafe {
            core::arch::asm!(
                "mov {off}, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                off = out(reg) off,
                options(nostack, pure, readonly, preserves_flags),
            );
            core::arch::asm!(
                "sub qword ptr fs:[{off} + {cd}], 1",
                "js {slow}",
                off = in(reg) off,
                cd = const super::countdown_offset(OP),
                slow = label { return false; },
                options(nostack),
            );
        }
        true
    }

    /// The calling thread's state block.
    #[inline(always)]
    pub fn state() -> &'static ThreadState {
        let p: *const ThreadState;
        // SAFETY: `fs:0` holds the thread pointer (the TCB points at
        // itself on x86_64); adding the block's TP offset gives its address.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr fs:[0]",
                "add {p}, qword ptr [rip + memscope_thread_state@GOTTPOFF]",
                p = out(reg) p,
                options(nostack, pure, readonly),
            );
            // The reference is only ever used on the owning thread
            // (`ThreadState` is not `Sync`, and callers do not send it).
            &*p
        }
    }

    /// The thread pointer (`fs:0`), from which the blocks lie at offsets
    /// the same in every thread (`scope::lock::gate_info`).
    #[inline]
    pub fn thread_pointer() -> Option<usize> {
        let tp: usize;
        // SAFETY: reads the TCB's pointer to itself.
        unsafe {
            core::arch::asm!("mov {tp}, qword ptr fs:[0]", tp = out(reg) tp, options(nostack, pure, readonly));
        }
        Some(tp)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::{ThreadState, THREAD_UNSEEN};
    use core::cell::Cell;

    const INIT: ThreadState = ThreadState {
        flags: Cell::new(THREAD_UNSEEN),
        depth: Cell::new(0),
        noreclaim_fast: AtomicU32::new(0),
        noreclaim_set_up: Cell::new(0),
        lists_exit_hook: Cell::new(0),
        in_reclaim: Cell::new(0),
        caller_sp: Cell::new(0),
        caller_fp: Cell::new(0),
        ring: [const { Cell::new(0) }; super::SCOPE_RING],
        stats: super::ThreadStats::ZERO,
    };

    thread_local! {
        static STATE: ThreadState = const { INIT };
        // SAFETY (of the zeroed value): plain cells and integers, for
        // which all-zero is valid (empty lists, nothing deferred).
        static BSS: super::ThreadBss = const { unsafe { core::mem::zeroed() } };
    }

    #[inline(always)]
    pub fn bss() -> &'static super::ThreadBss {
        // SAFETY: lives as long as the thread, used only on it, no Drop.
        BSS.with(|b| unsafe { &*(b as *const super::ThreadBss) })
    }

    #[inline(always)]
    pub fn flags() -> u32 {
        STATE.with(|s| s.flags.get())
    }

    #[inline(always)]
    pub fn gate<const OP: usize>() -> bool {
        STATE.with(|s| {
            let cd = &s.stats.countdown[OP];
            let left = cd.get().wrapping_sub(1);
            cd.set(left);
            (left as i64) >= 0
        })
    }

    #[inline(always)]
    pub fn state() -> &'static ThreadState {
        // SAFETY: the block lives as long as the thread and is used only on
        // it; `ThreadState` has no destructor.
        STATE.with(|s| unsafe { &*(s as *const ThreadState) })
    }

    /// Not reached from a thread pointer here: no gate for the locks
    /// library (which exists on x86_64 Linux only).
    pub fn thread_pointer() -> Option<usize> {
        None
    }
}

pub use imp::{bss, flags, gate, state, thread_pointer};

/// The `.tbss` block of the thread whose `.tdata` block is `st`, for the
/// maintenance thread's reads of other threads' lists: both blocks lie in
/// this library's TLS block, at the same distance from each other in every
/// thread, which the calling thread's own pair gives.
///
/// # Safety
/// `st` is a live thread's block, kept alive while the result is used
/// (the harvest handshake: `stats::thread`).
pub unsafe fn bss_of(st: &ThreadState) -> &ThreadBss {
    let delta = (bss() as *const ThreadBss as usize).wrapping_sub(state() as *const ThreadState as usize);
    // SAFETY: the caller's contract; the distance is the same in every thread.
    unsafe { &*((st as *const ThreadState as usize).wrapping_add(delta) as *const ThreadBss) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block's size places jemalloc's thread data after it in the TLS
    /// block: 40 bytes more once made every plain malloc+free pair 2 ns
    /// slower (docs/DECISIONS.md, D54). A change here is measured with
    /// `make bench` first, then this number is updated.
    #[test]
    fn the_thread_block_keeps_its_size() {
        assert_eq!(core::mem::size_of::<ThreadState>(), 560);
    }

    #[test]
    fn new_threads_start_unseen_and_state_is_per_thread() {
        std::thread::spawn(|| {
            assert_ne!(flags() & THREAD_UNSEEN, 0);
            state().depth.set(7);
            assert_eq!(state().depth.get(), 7);
            std::thread::spawn(|| assert_eq!(state().depth.get(), 0))
                .join()
                .unwrap();
        })
        .join()
        .unwrap();
    }
}
