//! The maintenance thread, memscope's `kswapd`: refills the NORECLAIM pool,
//! frees what scoped threads deferred, runs purges they may not run,
//! prints the diagnostics they may not print, keeps idle threads' counts
//! current in the stats segment, and enforces the soft limit.
//!
//! It sits above every layer it serves and takes its work from the
//! `mailbox`; nothing below calls into it. Started lazily (never from a
//! constructor: `mailbox::start_maintenance`), again in a forked child
//! (whose fork handler, in `init`, makes the mailbox forget this one).

use core::sync::atomic::{AtomicBool, Ordering::*};

use crate::base::counters::{self, count, Event};
use crate::base::log;
use crate::base::mailbox;
use crate::daemon::{lockstats, purge};
use crate::front::depot;
use crate::pool;

/// Poll interval bounds: 250 us while busy, doubling to 2 ms while
/// NORECLAIM scopes took pool blocks in the last second (so the depot is
/// restocked within 2 ms of running low: scoped threads cannot wake this
/// thread, that would be a syscall), and to 50 ms when all is idle.
const POLL_MIN_US: u64 = 250;
const POLL_ACTIVE_MAX_US: u64 = 2_000;
const POLL_MAX_US: u64 = 50_000;
const ACTIVE_FOR_NS: u64 = 1_000_000_000;
/// How often the slower upkeep runs: the cgroup's limits read again
/// (percentages), lock-wait totals (`lockstats`), gauges, the TSC's rate.
const ONCE_A_SECOND_NS: u64 = 1_000_000_000;
/// How often the maintenance thread compares RSS with the soft limit.
const SOFT_LIMIT_EVERY_NS: u64 = 100_000_000;
/// What a pressure event asks the reclaimers for, at least: a sixteenth
/// of the resident set, and no less than this.
const PRESSURE_RECLAIM_MIN: u64 = 1 << 20;

// ------------------------------------------------------------ the thread

/// Starts the thread if it is not running. Call only outside NORECLAIM.
pub fn ensure_started() {
    if mailbox::is_running() || !mailbox::begin_start() {
        return;
    }
    STARTED_UP.store(false, Relaxed);
    // Every signal blocked in it: the program's handlers never run on
    // the maintenance thread (`os::with_signals_blocked`).
    let spawned = crate::os::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("memscope-maint".into())
            .stack_size(256 << 10)
            .spawn(move || {
                leave_own_arena();
                // Its own first allocations (jemalloc's per-thread set-up
                // picks and may create an arena) are done: say so.
                STARTED_UP.store(true, Release);
                run()
            })
    });
    match spawned {
        Ok(_) => {
            wait_started_up();
            mailbox::note_started();
            mailbox::set_running();
        }
        Err(e) => {
            count(Event::MaintenanceStartFailure);
            // Once: new threads try again, and each failure is counted.
            if mailbox::note_start_failed() {
                let code = e.raw_os_error().unwrap_or(0);
                log::warn(format_args!(
                    "could not start the maintenance thread (errno {code}); the NORECLAIM pool will not refill \
                     until it starts (tried again when a thread starts or first enters NORECLAIM)"
                ));
            }
        }
    }
    mailbox::end_start();
}

/// Moves the calling (maintenance) thread to arena 0, the main thread's.
/// jemalloc gives each new thread the least-used arena, or creates one
/// while an arena has no thread: a thread of memscope's own would hold an
/// arena of the program's, and the program's threads would spread over one
/// more arena, each holding a few MiB of slabs and dirty pages (larson: a
/// worker replaced by a fresh thread takes the arena its predecessor left
/// only if no other arena is empty). The maintenance thread allocates
/// little, so sharing arena 0 costs nothing. Failure (e.g. `percpu_arena`
/// set, where threads cannot be moved) leaves it where it is.
fn leave_own_arena() {
    let _ = crate::base::ctl::write::<u32>(c"thread.arena", 0);
}

/// Set by the new thread once its start-up allocations are done.
static STARTED_UP: AtomicBool = AtomicBool::new(false);

/// Waits (at most about a second) until the new thread has made its first
/// allocations. A thread's first allocation sets up jemalloc's per-thread
/// state, which may create an arena; if the starting thread ran ahead and
/// used up the address space first (the `nofail rlimit` test does exactly
/// that after its first NOFAIL scope), jemalloc 5.3 dereferenced the arena
/// it failed to create, and the process died of SIGSEGV one run in forty.
/// Starting happens outside every scope, so waiting here is allowed.
fn wait_started_up() {
    for _ in 0..10_000 {
        if STARTED_UP.load(Acquire) {
            return;
        }
        crate::os::sleep_ns(100_000);
    }
}

fn run() {
    crate::stats::sites::learn_stack_offsets();
    crate::daemon::pressure::ensure_watching();
    let mut poll_us = POLL_MIN_US;
    let mut last_purges = 0;
    let mut last_soft_check = 0u64;
    let mut last_harvest = 0u64;
    let mut last_active = 0u64;
    let mut last_once_a_second = 0u64;
    let mut thread_held = 0usize;
    loop {
        let mut busy = mailbox::take_wake();
        busy |= mailbox::free_deferred() > 0;
        if mailbox::take_purge_request() {
            busy = true;
            purge::purge_all();
            count(Event::MaintenancePurge);
        }
        busy |= pool::refault_if_forked();
        let stocked = depot::restock();
        busy |= stocked;
        pool::repay_reserve();
        let more_refill = pool::refill_step();
        busy |= more_refill;
        report_fast_fails();
        crate::stats::profile::poll();
        let now = crate::base::log::coarse_nanos();
        if now.wrapping_sub(last_harvest) >= crate::stats::thread::HARVEST_EVERY_NS {
            last_harvest = now;
            // Pool blocks kept in threads' lists, for the gauges.
            let mut held = 0usize;
            crate::stats::thread::harvest_all(&mut |st| {
                // SAFETY: `st` is held alive by the harvest's handshake.
                held = held.saturating_add(crate::front::magazine::held_bytes(
                    &unsafe { crate::base::tls::bss_of(st) }.magazines,
                ));
            });
            thread_held = held;
        }
        if now.wrapping_sub(last_once_a_second) >= ONCE_A_SECOND_NS {
            last_once_a_second = now;
            // Follows the cgroup (a move, or a limit changed under us)
            // before the gauges report the limits.
            crate::base::config::resolve_limits(true);
            lockstats::refresh();
            if pool::follow_use() {
                crate::front::depot::flush_stock_cache();
            }
            crate::daemon::gauges::refresh(thread_held);
            crate::stats::clock::refine();
        }
        if crate::daemon::pressure::take() {
            busy = true;
            respond_to_pressure();
        }
        if now.wrapping_sub(last_soft_check) >= SOFT_LIMIT_EVERY_NS {
            last_soft_check = now;
            busy |= enforce_soft_limit();
        }
        let purges = counters::get(Event::MaintenancePurge);
        busy |= purges != last_purges;
        last_purges = purges;
        if more_refill {
            continue; // drain the queue again, then the next step
        }
        if stocked {
            last_active = now;
        }
        let max = if now.wrapping_sub(last_active) < ACTIVE_FOR_NS {
            POLL_ACTIVE_MAX_US
        } else {
            POLL_MAX_US
        };
        poll_us = if busy { POLL_MIN_US } else { (poll_us * 2).min(max) };
        sleep_us(poll_us);
    }
}

fn sleep_us(us: u64) {
    crate::os::sleep_ns(us * 1_000);
}

/// Runs the reclaimers (all of them: this thread holds no locks) when RSS
/// is above `MEMSCOPE_SOFT_LIMIT`, asking for the excess, then purges.
/// Returns true if it ran them.
/// Memory pressure (`pressure`): asks the reclaimers for what is above the
/// soft limit, or else a sixteenth of the resident set (at least 1 MiB),
/// then purges every arena so that what they freed leaves RSS: the kernel
/// would otherwise reclaim it, with the same stalls, from whoever faults.
fn respond_to_pressure() {
    count(Event::PressureReclaim);
    let rss = resident_bytes();
    let soft = crate::base::config::CONFIG.soft_limit_bytes();
    let want = if soft != 0 && rss > soft {
        rss - soft
    } else {
        (rss / 16).max(PRESSURE_RECLAIM_MIN)
    };
    crate::nofail::reclaim::run(want as usize, 0);
    purge::purge_all();
    count(Event::MaintenancePurge);
}

fn enforce_soft_limit() -> bool {
    let limit = crate::base::config::CONFIG.soft_limit_bytes();
    if limit == 0 {
        return false;
    }
    let rss = resident_bytes();
    if rss <= limit {
        return false;
    }
    count(Event::SoftLimitReclaim);
    if crate::nofail::reclaim::run((rss - limit) as usize, 0) > 0 {
        // What the reclaimers freed is dirty memory until purged; purge it
        // here (this thread may) so RSS, which the limit is about, drops
        // and the next look does not reclaim again for the same bytes.
        purge::purge_all();
        count(Event::MaintenancePurge);
    }
    true
}

/// Resident set size from `/proc/self/statm`, read without allocating.
fn resident_bytes() -> u64 {
    let mut buf = [0u8; 128];
    let n = crate::os::read_small_file(c"/proc/self/statm", &mut buf);
    let text = &buf[..n];
    let pages = text
        .split(|&c| c == b' ')
        .nth(1)
        .and_then(|f| core::str::from_utf8(f).ok())
        .and_then(|f| f.trim().parse::<u64>().ok())
        .unwrap_or(0);
    pages * crate::os::page_size() as u64
}

/// Prints, for scoped threads that may not, one line about the NORECLAIM
/// allocations that failed since the last report.
fn report_fast_fails() {
    let nulls = mailbox::POLICY_NULLS_TO_REPORT.swap(0, Relaxed);
    if nulls > 0 {
        log::warn(format_args!(
            "{nulls} impossible NOFAIL allocation(s) inside NORECLAIM returned NULL: pool and reserve empty \
             (MEMSCOPE_NOFAIL_POLICY=null)"
        ));
    }
    use mailbox::Refusal;
    let take = |why: Refusal| {
        let n = mailbox::FAST_FAILS_TO_REPORT[why as usize].swap(0, Relaxed);
        (n, mailbox::FAST_FAIL_LARGEST[why as usize].swap(0, Relaxed))
    };
    let (n, largest) = take(Refusal::Exhausted);
    if n > 0 {
        let u = pool::usage();
        log::warn(format_args!(
            "{n} NORECLAIM allocation(s) failed at once: pool exhausted (largest request {largest} bytes; all of the \
             {} committed bytes carved or set aside for the NOFAIL reserve, {} reserved); refilling. Raise \
             MEMSCOPE_NORECLAIM_POOL (the committed headroom), prepare known shapes with memscope_prepare(), \
             or add NOWARN to silence",
            u.committed, u.reserved
        ));
    }
    let (n, largest) = take(Refusal::TooLarge);
    if n > 0 {
        log::warn(format_args!(
            "{n} NORECLAIM allocation(s) failed at once: larger than any block the pool serves (largest request \
             {largest} bytes; the pool serves up to {} bytes and alignments up to that); make them outside the \
             scope, or add NOWARN to silence",
            crate::base::sizeclass::MAX_SIZE
        ));
    }
    let (n, largest) = take(Refusal::WithFree);
    if n > 0 {
        log::warn(format_args!(
            "{n} NORECLAIM allocation(s) were refused while committed pool memory was still free (largest request \
             {largest} bytes): a memscope bug (counted as noreclaim_refused_with_free), please report it"
        ));
    }
}
