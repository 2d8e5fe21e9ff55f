//! NOFAIL: a possible request never returns NULL.
//!
//! When the ordinary path fails: run the reclaimers this thread may run,
//! retry, fall back on the reserve (pre-faulted, beside the NORECLAIM
//! pool), then wait (bounded, woken early by reclaim progress) and go
//! round again, forever or until `MEMSCOPE_NOFAIL_DEADLINE_MS`. Inside
//! NORECLAIM there is no waiting and no OS call: pool, reserve, policy.
//!
//! Impossible requests (larger than `MEMSCOPE_NOFAIL_MAX`, checked before
//! anything is tried, as an absurd size under NOFAIL is a bug to surface;
//! past the deadline; or in NORECLAIM with pool and reserve empty) follow
//! `MEMSCOPE_NOFAIL_POLICY`: `null` (NULL + ENOMEM, one rate-limited line
//! unless NOWARN) or `abort` (one line, then `abort()`). Every case counts.
//!
//! Tier 6. Owns the NOFAIL retry loop (here) and the reclaimers it runs
//! (`reclaim`, which comes before this file). May call: `scope`, `front`,
//! `pool`, `stats`, `base`, `os`.

pub(crate) mod reclaim;

use core::ffi::c_void;
use core::fmt::Write;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tikv_jemalloc_sys as jem;

use crate::base::config::{NofailPolicy, CONFIG};
use crate::base::counters::{count, Event};
use crate::base::log::{self, set_errno};
use crate::base::mailbox;
use crate::base::mailbox::Refusal;
use crate::base::tls::{NORECLAIM, NOWARN};
use crate::pool;

/// How often a NOFAIL request that keeps waiting says so (the kernel's
/// `warn_alloc` "page allocation stalls for N ms", every 10 s).
pub const STALL_REPORT_NS: u64 = 10_000_000_000;

/// Longest single back-off wait.
const BACKOFF_MAX_NS: u64 = 64_000_000;
const BACKOFF_MIN_NS: u64 = 1_000_000;

/// Test support (`memscope_test_fail_next`): ordinary NOFAIL attempts
/// still to fail on purpose.
static FAULTS_TO_INJECT: AtomicU64 = AtomicU64::new(0);

/// Makes the next `n` ordinary allocation attempts under NOFAIL fail as if
/// memory were exhausted (any thread). For tests of the retry path.
pub fn inject_faults(n: u64) {
    FAULTS_TO_INJECT.store(n, Relaxed);
}

/// True if this ordinary attempt is to fail on purpose
/// (`memscope_test_fail_next`); a resize's own attempt is one
/// (`entry::route`).
#[inline]
pub fn injected_fault() -> bool {
    FAULTS_TO_INJECT.load(Relaxed) != 0
        && FAULTS_TO_INJECT
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
}

/// The ordinary path, under fault injection.
unsafe fn ordinary(size: usize, caller_bits: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if injected_fault() {
            null_mut()
        } else if caller_bits == 0 {
            jem::malloc(size)
        } else {
            jem::mallocx(size.max(1), caller_bits)
        }
    }
}

unsafe fn from_reserve(size: usize, caller_bits: i32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let flags = pool::reserve_flags();
        if flags != 0 {
            let p = jem::mallocx(size.max(1), flags | caller_bits);
            if !p.is_null() {
                pool::note_request(p);
                count(Event::ReserveHit);
                return p;
            }
        }
        count(Event::ReserveExhausted);
        null_mut()
    }
}

/// A NOFAIL allocation: inside NORECLAIM, the front end, then the
/// reserve, then the policy (`in_noreclaim`); outside, the ordinary path,
/// then reclaim and retry until it succeeds (`retry`).
///
/// # Safety
/// `caller_bits` holds only `MALLOCX_ALIGN`/`MALLOCX_ZERO` bits.
pub unsafe fn alloc(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        if flags & NORECLAIM != 0 {
            return in_noreclaim(size, caller_bits, flags);
        }
        if let Some(answer) = answered_first(size, caller_bits, flags) {
            return answer;
        }
        let p = ordinary(size, caller_bits);
        if !p.is_null() {
            return p;
        }
        after_ordinary(size, caller_bits, flags)
    }
}

/// What a NOFAIL request outside NORECLAIM gets before any attempt: the
/// policy for a size above `MEMSCOPE_NOFAIL_MAX`, or for one jemalloc can
/// never serve (nallocx says 0), or for an alignment beyond the address
/// space (an alignment of 2^62 retried forever: jemalloc's usable size for
/// it is small, the mapping it needs impossible). None: go on. Resizes
/// (`realloc`, `reallocarray`, `rallocx`) ask it too, before their own
/// ordinary attempt.
pub fn answered_first(size: usize, caller_bits: i32, flags: u32) -> Option<*mut c_void> {
    if size as u64 > CONFIG.nofail_max_bytes() {
        return Some(policy(Event::PolicyTooLarge, size, flags));
    }
    let align = crate::front::magazine::align_of_bits(caller_bits);
    // SAFETY: nallocx has no preconditions.
    let usable = unsafe { jem::nallocx(size.max(1), caller_bits & ALIGN_BITS) };
    if usable == 0 || align > MAX_ALIGN {
        return Some(policy(Event::PolicyImpossible, size, flags));
    }
    if usable as u64 > CONFIG.nofail_max_bytes() {
        return Some(policy(Event::PolicyTooLarge, size, flags));
    }
    None
}

/// A NOFAIL request outside NORECLAIM whose ordinary attempt failed (an
/// allocation's, or a resize's): reclaim and retry until it is served or
/// the policy answers.
///
/// # Safety
/// As `alloc`.
pub unsafe fn after_ordinary(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // An alignment is address space, not memory: tried as it is (the
    // machine may map it), but one above MEMSCOPE_NOFAIL_MAX that the
    // ordinary path refused cannot be helped by reclaim.
    let align = crate::front::magazine::align_of_bits(caller_bits);
    if align as u64 > CONFIG.nofail_max_bytes() {
        return policy(Event::PolicyImpossible, size, flags);
    }
    // SAFETY: the caller's contract.
    unsafe { retry(size, caller_bits, flags) }
}

/// NOFAIL inside NORECLAIM: the front end (a refusal counted there), the
/// reserve's stacks in the front end, then the policy. No OS call, no
/// wait.
///
/// # Safety
/// As `alloc`.
unsafe fn in_noreclaim(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    let within_max = size as u64 <= CONFIG.nofail_max_bytes();
    // SAFETY: the caller's contract.
    let served = unsafe { crate::front::magazine::alloc_request(size, caller_bits, flags, within_max) };
    let kind = match served {
        Ok(p) => return p,
        Err(_) if !within_max => Event::PolicyTooLarge,
        // No block of the pool or the reserve is that large.
        Err(Refusal::TooLarge) => Event::PolicyImpossible,
        Err(_) => {
            count(Event::ReserveExhausted);
            Event::PolicyNoreclaimEmpty
        }
    };
    policy(kind, size, flags)
}

#[cold]
unsafe fn retry(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let t = crate::stats::event_start();
        let p = retry_loop(size, caller_bits, flags);
        crate::stats::event_done(crate::stats::Timer::NofailSlowPath, t);
        p
    }
}

unsafe fn retry_loop(size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let start = now_ns();
        crate::stats::thread::nofail_wait_begin(size, start);
        let p = retry_loop_from(start, size, caller_bits, flags);
        crate::stats::thread::nofail_wait_end();
        p
    }
}

unsafe fn retry_loop_from(start: u64, size: usize, caller_bits: i32, flags: u32) -> *mut c_void {
    // SAFETY: within this function's own contract (its `# Safety`).
    unsafe {
        let deadline_ns = CONFIG.nofail_deadline_ms.load(Relaxed).saturating_mul(1_000_000);
        let mut backoff = BACKOFF_MIN_NS;
        let mut next_report = STALL_REPORT_NS;
        loop {
            count(Event::NofailRetry);
            let seen = reclaim::PROGRESS.load(Relaxed);
            reclaim::run(size, flags);
            let p = ordinary(size, caller_bits);
            if !p.is_null() {
                return p;
            }
            let p = from_reserve(size, caller_bits);
            if !p.is_null() {
                return p;
            }
            let mut wait = backoff;
            let spent = now_ns() - start;
            if spent >= next_report {
                report_stall(size, flags, spent);
                next_report = (spent / STALL_REPORT_NS + 1) * STALL_REPORT_NS;
            }
            if deadline_ns > 0 {
                if spent >= deadline_ns {
                    return policy(Event::PolicyDeadline, size, flags);
                }
                wait = wait.min(deadline_ns - spent);
            }
            wait = wait.min(next_report - spent);
            count(Event::BackoffWait);
            mailbox::wake();
            reclaim::wait_for_progress(seen, wait);
            backoff = (backoff * 2).min(BACKOFF_MAX_NS);
        }
    }
}

/// One line per stalled request every `STALL_REPORT_NS` (not rate-limited
/// with other diagnostics, so each waiting thread is heard), unless NOWARN
/// or `MEMSCOPE_LOG=off`; always counted.
#[cold]
fn report_stall(size: usize, flags: u32, spent_ns: u64) {
    count(Event::NofailStall);
    if flags & NOWARN != 0 || !log::enabled() {
        return;
    }
    let mut line = log::StackLine::new();
    let tid = crate::os::gettid();
    let _ = writeln!(
        line,
        "memscope: NOFAIL allocation of {size} bytes stalls for {} ms on thread {tid} (scope flags {:#x}); \
         still retrying (reclaimers, reserve, back-off)",
        spent_ns / 1_000_000,
        flags & crate::base::tls::ALL
    );
    log::write_stderr(line.as_bytes());
}

/// The alignment bits of a `mallocx` flags word.
const ALIGN_BITS: i32 = 0x3f;

/// No alignment above this can be given: x86_64 and AArch64 user address
/// spaces are 2^47 (four-level page tables) or at most 2^56 bytes.
const MAX_ALIGN: usize = 1 << 47;

/// A request no allocator can meet, seen by an entry point before it
/// reaches the allocator (a size that overflows, an alignment that cannot
/// be given): NULL with `errno` (ENOMEM or EINVAL, as C says), or, under
/// NOFAIL, what `MEMSCOPE_NOFAIL_POLICY` says (counted as
/// `policy_impossible`; with `null`, errno is still `errno`).
#[cold]
pub fn impossible(size: usize, errno: i32) -> *mut c_void {
    let flags = crate::base::tls::flags();
    if flags & crate::base::tls::NOFAIL != 0 && flags & crate::base::tls::THREAD_UNSEEN == 0 {
        policy(Event::PolicyImpossible, size, flags);
    } else if flags & NORECLAIM != 0 && flags & crate::base::tls::THREAD_UNSEEN == 0 {
        // A NORECLAIM call that returns NULL: a refusal (`stats::sites`).
        crate::stats::sites::record(memscope_abi::SITE_REFUSED, 1, size as u64, size as u64);
    }
    if flags & crate::base::tls::IN_LOCK != 0 && flags & crate::base::tls::THREAD_UNSEEN == 0 {
        crate::stats::locks::allocated(size, true, None);
    }
    set_errno(errno);
    null_mut()
}

/// NULL with ENOMEM, or a diagnostic and `abort()`.
#[cold]
fn policy(kind: Event, size: usize, flags: u32) -> *mut c_void {
    count(kind);
    crate::stats::sites::record(memscope_abi::SITE_POLICY, 1, size as u64, size as u64);
    let why = match kind {
        Event::PolicyTooLarge => "larger than MEMSCOPE_NOFAIL_MAX",
        Event::PolicyDeadline => "MEMSCOPE_NOFAIL_DEADLINE_MS passed",
        Event::PolicyImpossible if flags & NORECLAIM != 0 => {
            "can never be met: its size overflows, its alignment cannot be given, or it is larger than any block \
             the NORECLAIM pool serves"
        }
        Event::PolicyImpossible => "can never be met: its size overflows or its alignment cannot be given",
        _ => "NORECLAIM pool and NOFAIL reserve both empty",
    };
    match CONFIG.nofail_policy() {
        NofailPolicy::Abort => {
            // About to abort: the diagnostic is written even under
            // NORECLAIM or NOWARN (it is the only trace of the cause).
            let mut line = log::StackLine::new();
            let tid = crate::os::gettid();
            let _ = writeln!(
                line,
                "memscope: impossible NOFAIL allocation of {size} bytes ({why}) on thread {tid}, scope flags {:#x}; \
                 MEMSCOPE_NOFAIL_POLICY=abort",
                flags & crate::base::tls::ALL
            );
            log::write_stderr(line.as_bytes());
            crate::os::abort()
        }
        NofailPolicy::Null => {
            if flags & NOWARN == 0 {
                if flags & NORECLAIM != 0 {
                    mailbox::POLICY_NULLS_TO_REPORT.fetch_add(1, Relaxed);
                } else {
                    log::warn(format_args!(
                        "impossible NOFAIL allocation of {size} bytes ({why}): NULL (MEMSCOPE_NOFAIL_POLICY=null)"
                    ));
                }
            }
            set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

fn now_ns() -> u64 {
    crate::os::monotonic_ns()
}
