//! The option table: every `MEMSCOPE_*` variable, read once at load by
//! scanning `environ` without allocating.
//!
//! Rule: a bad value prints one line naming the variable and the value,
//! keeps the default, and never stops the host program.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::base::log;

/// What `MEMSCOPE_NOFAIL_POLICY` asks for an impossible NOFAIL request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NofailPolicy {
    /// NULL with `errno = ENOMEM`, like the kernel's WARN-and-fail.
    Null = 0,
    /// One diagnostic line, then `abort()`.
    Abort = 1,
}

/// One row of the option table: everything about an option in one place.
pub struct Opt {
    pub name: &'static str,
    /// The default, as the text a user would write: `load` applies it
    /// through `set` before the environment, so it is the only default.
    pub default: &'static str,
    /// What the option does: the README's table repeats it, which a test
    /// checks (the only reader: the table is the documentation).
    #[allow(dead_code)]
    pub help: &'static str,
    /// Parses a value and stores it in `CONFIG` (clamping, with one line,
    /// where a value is out of range), or says why it is bad.
    pub set: fn(&Opt, &[u8]) -> Result<(), BadValue>,
}

/// This build's version, `MAJOR << 16 | MINOR << 8 | PATCH` (the C API's
/// `memscope_version()`, the stats segment's `lib_version`).
pub const VERSION: u32 = (parse_decimal(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
    | (parse_decimal(env!("CARGO_PKG_VERSION_MINOR")) << 8)
    | parse_decimal(env!("CARGO_PKG_VERSION_PATCH"));

const fn parse_decimal(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

pub const PATH_MAX_LEN: usize = 256;

/// `MEMSCOPE_LOCK_SCOPE`'s values: the scope flags a lock section enters
/// (`tls` checks that they are `NORECLAIM` and `NORECLAIM | NOFAIL`), kept
/// as they are so that a section reads them with one load.
pub const LOCK_SCOPE_REPORT: u8 = 0;
pub const LOCK_SCOPE_NORECLAIM: u8 = 0x01;
pub const LOCK_SCOPE_NORECLAIM_NOFAIL: u8 = 0x05;

/// Every option memscope reads, with its parser; names, defaults and texts
/// are `memscope_abi::names::OPTIONS` (shared with the CLI's man page). The
/// README repeats them; a unit test keeps it in step.
pub const OPTIONS: &[Opt] = &[
    opt("MEMSCOPE_NORECLAIM_POOL", set_noreclaim_pool),
    opt("MEMSCOPE_NORECLAIM_MAX", set_noreclaim_max),
    opt("MEMSCOPE_RESERVE", set_reserve),
    opt("MEMSCOPE_POOL_MLOCK", set_pool_mlock),
    opt("MEMSCOPE_NOFAIL_MAX", set_nofail_max),
    opt("MEMSCOPE_NOFAIL_POLICY", set_nofail_policy),
    opt("MEMSCOPE_NOFAIL_DEADLINE_MS", set_nofail_deadline_ms),
    opt("MEMSCOPE_LOCK_SCOPE", set_lock_scope),
    opt("MEMSCOPE_SOFT_LIMIT", set_soft_limit),
    opt("MEMSCOPE_PRESSURE", set_pressure),
    opt("MEMSCOPE_STATS", set_stats),
    opt("MEMSCOPE_STATS_SAMPLE", set_stats_sample),
    opt("MEMSCOPE_STATS_DIR", set_stats_dir),
    opt("MEMSCOPE_LOG", set_log),
];

/// The option `name` of `memscope_abi::names::OPTIONS` (its default and
/// text) with its setter; a name missing there fails the build.
const fn opt(name: &str, set: fn(&Opt, &[u8]) -> Result<(), BadValue>) -> Opt {
    let table = &memscope_abi::names::OPTIONS;
    let mut i = 0;
    while i < table.len() {
        if const_eq(table[i].0, name) {
            return Opt {
                name: table[i].0,
                default: table[i].1,
                help: table[i].2,
                set,
            };
        }
        i += 1;
    }
    panic!("option missing from memscope_abi::names::OPTIONS");
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `MEMSCOPE_*` variables that belong to other parts of memscope (the CLI,
/// test harnesses): the library neither reads nor warns about them.
const NOT_THE_LIBRARYS: &[&str] = &["MEMSCOPE_LIB"];

/// Parsed values. Written once during `load`, read everywhere after.
pub struct Config {
    pub noreclaim_pool: AtomicU64,
    pub reserve: AtomicU64,
    pub noreclaim_max: AtomicU64,
    /// `MEMSCOPE_NORECLAIM_MAX` came from the environment (not the default).
    pub noreclaim_max_explicit: AtomicBool,
    pub pool_mlock: AtomicBool,
    /// Absolute bytes, or a percentage when `nofail_max_percent` is set.
    pub nofail_max: AtomicU64,
    pub nofail_max_percent: AtomicBool,
    /// `nofail_max` resolved to bytes at load (resolving a percentage
    /// calls the OS, which a NORECLAIM thread may not).
    pub nofail_max_resolved: AtomicU64,
    pub nofail_policy: AtomicU8,
    pub nofail_deadline_ms: AtomicU64,
    /// `MEMSCOPE_LOCK_SCOPE` (`LOCK_SCOPE_*`; its flags: `tls::lock_scope_flags`).
    pub lock_scope: AtomicU8,
    /// Absolute bytes, or a percentage when `soft_limit_percent` is set.
    pub soft_limit: AtomicU64,
    pub soft_limit_percent: AtomicBool,
    /// `soft_limit` in bytes (0: off), resolved like `nofail_max_resolved`.
    pub soft_limit_resolved: AtomicU64,
    /// What percentages are of: the cgroup's memory limit (or physical
    /// memory, whichever is smaller), and where it came from
    /// (`LIMIT_FROM_*`). Resolved at load, again by the maintenance thread
    /// about once a second (`resolve_limits`).
    pub memory_limit: AtomicU64,
    pub memory_limit_from: AtomicU8,
    /// A percentage came from the environment (so load reads the cgroup).
    percent_explicit: AtomicBool,
    /// `MEMSCOPE_PRESSURE`: the PSI trigger's stall and window in
    /// microseconds; 0 and 0: off.
    pub pressure_stall_us: AtomicU64,
    pub pressure_window_us: AtomicU64,
    pub stats: AtomicBool,
    pub stats_sample: AtomicU64,
    stats_dir: PathBuf,
}

/// A fixed buffer for the stats directory (no allocation at load).
struct PathBuf {
    len: AtomicU64,
    bytes: UnsafeCell<[u8; PATH_MAX_LEN]>,
}

// SAFETY: `bytes` is written only inside `load`, which runs once before
// `init` publishes the configuration with a release store; readers come
// after the matching acquire.
unsafe impl Sync for PathBuf {}

/// Empty until `load` applies every row's default (from `OPTIONS`, the
/// one place defaults are written), then the environment.
pub static CONFIG: Config = Config {
    noreclaim_pool: AtomicU64::new(0),
    reserve: AtomicU64::new(0),
    noreclaim_max: AtomicU64::new(0),
    noreclaim_max_explicit: AtomicBool::new(false),
    pool_mlock: AtomicBool::new(false),
    nofail_max: AtomicU64::new(0),
    nofail_max_percent: AtomicBool::new(false),
    nofail_max_resolved: AtomicU64::new(u64::MAX),
    nofail_policy: AtomicU8::new(NofailPolicy::Null as u8),
    nofail_deadline_ms: AtomicU64::new(0),
    lock_scope: AtomicU8::new(LOCK_SCOPE_REPORT),
    soft_limit: AtomicU64::new(0),
    soft_limit_percent: AtomicBool::new(false),
    soft_limit_resolved: AtomicU64::new(0),
    memory_limit: AtomicU64::new(0),
    memory_limit_from: AtomicU8::new(LIMIT_FROM_PHYSICAL),
    percent_explicit: AtomicBool::new(false),
    pressure_stall_us: AtomicU64::new(0),
    pressure_window_us: AtomicU64::new(0),
    stats: AtomicBool::new(false),
    stats_sample: AtomicU64::new(0),
    stats_dir: PathBuf {
        len: AtomicU64::new(0),
        bytes: UnsafeCell::new([0; PATH_MAX_LEN]),
    },
};

impl Config {
    pub fn nofail_policy(&self) -> NofailPolicy {
        match self.nofail_policy.load(Relaxed) {
            1 => NofailPolicy::Abort,
            _ => NofailPolicy::Null,
        }
    }

    /// The stats directory, NUL-terminated (the slice includes the NUL).
    pub fn stats_dir_cstr(&self) -> &[u8] {
        let len = self.stats_dir.len.load(Relaxed) as usize;
        // SAFETY: see `PathBuf`'s Sync note: no writes after publication.
        let bytes = unsafe { &*self.stats_dir.bytes.get() };
        &bytes[..=len]
    }

    /// `MEMSCOPE_NOFAIL_MAX` in bytes (resolved).
    pub fn nofail_max_bytes(&self) -> u64 {
        self.nofail_max_resolved.load(Relaxed)
    }

    /// `MEMSCOPE_SOFT_LIMIT` in bytes (resolved; 0: off).
    pub fn soft_limit_bytes(&self) -> u64 {
        self.soft_limit_resolved.load(Relaxed)
    }
}

/// `Config::memory_limit_from` values.
pub const LIMIT_FROM_PHYSICAL: u8 = 0;
pub const LIMIT_FROM_MEMORY_MAX: u8 = 1;
pub const LIMIT_FROM_MEMORY_HIGH: u8 = 2;
pub const LIMIT_FROM_V1: u8 = 3;

/// Resolves the percentages (`MEMSCOPE_NOFAIL_MAX`, `MEMSCOPE_SOFT_LIMIT`)
/// against the memory limit: the cgroup's when `with_cgroup` (a few small
/// file reads), else physical memory. Never on a scoped thread.
pub fn resolve_limits(with_cgroup: bool) {
    let physical = crate::os::physical_memory();
    let (base, from) = match with_cgroup.then(crate::os::cgroup::memory_limit).flatten() {
        Some((v, src)) if v < physical => (
            v,
            match src {
                crate::os::cgroup::LimitSource::MemoryMax => LIMIT_FROM_MEMORY_MAX,
                crate::os::cgroup::LimitSource::MemoryHigh => LIMIT_FROM_MEMORY_HIGH,
                crate::os::cgroup::LimitSource::V1Limit => LIMIT_FROM_V1,
            },
        ),
        _ => (physical, LIMIT_FROM_PHYSICAL),
    };
    CONFIG.memory_limit.store(base, Relaxed);
    CONFIG.memory_limit_from.store(from, Relaxed);
    let of = |v: u64, pct: bool| {
        if pct {
            (u128::from(base) * u128::from(v) / 100) as u64
        } else {
            v
        }
    };
    CONFIG.nofail_max_resolved.store(
        of(
            CONFIG.nofail_max.load(Relaxed),
            CONFIG.nofail_max_percent.load(Relaxed),
        ),
        Relaxed,
    );
    CONFIG.soft_limit_resolved.store(
        of(
            CONFIG.soft_limit.load(Relaxed),
            CONFIG.soft_limit_percent.load(Relaxed),
        ),
        Relaxed,
    );
}

/// A parse failure: what was wrong, for the warning line.
#[derive(Debug, PartialEq, Eq)]
pub struct BadValue(pub &'static str);

/// Parses a byte size: `4096`, `64K`, `64KB`, `64KiB`, `32M`, `1G`, `2T`.
pub fn parse_size(s: &[u8]) -> Result<u64, BadValue> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return Err(BadValue(
            "expected a whole number of bytes with an optional K/M/G/T suffix",
        ));
    }
    let mut n: u64 = 0;
    for &c in &s[..digits] {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(BadValue("number too large"))?;
    }
    let shift = match &s[digits..] {
        b"" | b"b" | b"B" => 0,
        [u] | [u, b'b' | b'B'] | [u, b'i', b'b' | b'B'] => match u.to_ascii_uppercase() {
            b'K' => 10,
            b'M' => 20,
            b'G' => 30,
            b'T' => 40,
            _ => return Err(BadValue("unknown size suffix (use K, M, G or T)")),
        },
        _ => return Err(BadValue("unknown size suffix (use K, M, G or T)")),
    };
    n.checked_mul(1u64 << shift).ok_or(BadValue("size too large"))
}

/// Parses `1/0/on/off/yes/no/true/false` (any case).
pub fn parse_bool(s: &[u8]) -> Result<bool, BadValue> {
    const TRUE: [&[u8]; 4] = [b"1", b"on", b"yes", b"true"];
    const FALSE: [&[u8]; 4] = [b"0", b"off", b"no", b"false"];
    if TRUE.iter().any(|t| s.eq_ignore_ascii_case(t)) {
        Ok(true)
    } else if FALSE.iter().any(|f| s.eq_ignore_ascii_case(f)) {
        Ok(false)
    } else {
        Err(BadValue("expected 1/0, on/off, yes/no or true/false"))
    }
}

/// Parses a plain whole number.
pub fn parse_count(s: &[u8]) -> Result<u64, BadValue> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return Err(BadValue("expected a whole number"));
    }
    parse_size(s)
}

/// Parses a size or `N%` (1 to 100).
pub fn parse_size_or_percent(s: &[u8]) -> Result<(u64, bool), BadValue> {
    match s.split_last() {
        Some((b'%', num)) => {
            let p = parse_count(num)?;
            if (1..=100).contains(&p) {
                Ok((p, true))
            } else {
                Err(BadValue("a percentage must be 1% to 100%"))
            }
        }
        _ => parse_size(s).map(|n| (n, false)),
    }
}

/// The largest ready headroom of the NORECLAIM pool and the largest NOFAIL
/// reserve: both are committed and pre-faulted when the pool is made, so
/// they stay well below `NORECLAIM_MAX_MIN`.
pub const POOL_MAX: u64 = 512 << 20;
pub const RESERVE_MAX: u64 = 256 << 20;
/// Bounds of `MEMSCOPE_NORECLAIM_MAX`: room for the largest pool and
/// reserve at least; at most 1 TiB of address space.
pub const NORECLAIM_MAX_MIN: u64 = 64 << 20;
pub const NORECLAIM_MAX_MAX: u64 = 1 << 40;
/// The smallest pool: one commit chunk (a 2 MiB huge page).
pub const POOL_MIN: u64 = 2 << 20;
/// The largest sampling period (the countdowns' arithmetic needs headroom).
pub const STATS_SAMPLE_MAX: u64 = u32::MAX as u64;

/// Keeps `v` within `lo..=hi`, saying so in one line (naming the
/// variable, what was asked, what is used and why) if it had to.
fn clamped(opt: &Opt, value: &[u8], v: u64, lo: u64, hi: u64, why: &str) -> u64 {
    let used = v.clamp(lo, hi);
    if used != v {
        log::warn(format_args!(
            "{}={}: {} {}; using {}",
            opt.name,
            log::Bytes(value),
            if v > hi {
                "above the largest value,"
            } else {
                "below the smallest value,"
            },
            why,
            used
        ));
    }
    used
}

/// Applies one `NAME=value` pair to `CONFIG`, or warns and keeps the default.
fn apply(opt: &Opt, value: &[u8]) {
    if let Err(BadValue(why)) = (opt.set)(opt, value) {
        log::warn(format_args!(
            "{}={}: {}; using the default {}",
            opt.name,
            log::Bytes(value),
            why,
            opt.default
        ));
    }
}

fn set_noreclaim_pool(opt: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let v = parse_size(value)?;
    let v = clamped(
        opt,
        value,
        v,
        POOL_MIN,
        POOL_MAX,
        "it is committed and pre-faulted up front",
    );
    CONFIG.noreclaim_pool.store(v, Relaxed);
    Ok(())
}

fn set_reserve(opt: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let v = parse_size(value)?;
    let v = clamped(
        opt,
        value,
        v,
        0,
        RESERVE_MAX,
        "it is committed and pre-faulted up front",
    );
    CONFIG.reserve.store(v, Relaxed);
    Ok(())
}

fn set_noreclaim_max(opt: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let v = parse_size(value)?;
    let v = clamped(
        opt,
        value,
        v,
        NORECLAIM_MAX_MIN,
        NORECLAIM_MAX_MAX,
        "it must hold the pool and the reserve, and is address space reserved at start",
    );
    CONFIG.noreclaim_max.store(v, Relaxed);
    Ok(())
}

fn set_pool_mlock(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    CONFIG.pool_mlock.store(parse_bool(value)?, Relaxed);
    Ok(())
}

fn set_nofail_max(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let (v, pct) = parse_size_or_percent(value)?;
    CONFIG.nofail_max.store(v, Relaxed);
    CONFIG.nofail_max_percent.store(pct, Relaxed);
    Ok(())
}

fn set_pressure(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let (stall, window) = parse_pressure(value)?;
    CONFIG.pressure_stall_us.store(stall, Relaxed);
    CONFIG.pressure_window_us.store(window, Relaxed);
    Ok(())
}

/// `off`, or `STALL/WINDOW` (each a number with `us`, `ms` or `s`): a PSI
/// trigger, "some STALL of stall time within WINDOW". The kernel takes
/// windows of 500 ms to 10 s, and a stall shorter than the window.
pub fn parse_pressure(s: &[u8]) -> Result<(u64, u64), BadValue> {
    if s == b"off" {
        return Ok((0, 0));
    }
    let mut parts = s.splitn(2, |&c| c == b'/');
    let (Some(stall), Some(window)) = (parts.next(), parts.next()) else {
        return Err(BadValue("expected `off` or STALL/WINDOW, e.g. `200ms/2s`"));
    };
    let (stall, window) = (parse_duration_us(stall)?, parse_duration_us(window)?);
    if !(500_000..=10_000_000).contains(&window) {
        return Err(BadValue("the window must be 500ms to 10s"));
    }
    if stall == 0 || stall >= window {
        return Err(BadValue("the stall must be above 0 and shorter than the window"));
    }
    Ok((stall, window))
}

/// A duration with its unit (`us`, `ms`, `s`), in microseconds.
fn parse_duration_us(s: &[u8]) -> Result<u64, BadValue> {
    let (num, scale) = if let Some(n) = s.strip_suffix(b"us") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix(b"ms") {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix(b"s") {
        (n, 1_000_000)
    } else {
        return Err(BadValue("a duration needs a unit: us, ms or s"));
    };
    parse_count(num)?
        .checked_mul(scale)
        .ok_or(BadValue("duration too large"))
}

fn set_nofail_policy(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let p = match value {
        b"null" => NofailPolicy::Null,
        b"abort" => NofailPolicy::Abort,
        _ => return Err(BadValue("expected `null` or `abort`")),
    };
    CONFIG.nofail_policy.store(p as u8, Relaxed);
    Ok(())
}

fn set_nofail_deadline_ms(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    CONFIG.nofail_deadline_ms.store(parse_count(value)?, Relaxed);
    Ok(())
}

fn set_lock_scope(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let mode = match value {
        b"report" => LOCK_SCOPE_REPORT,
        b"noreclaim" => LOCK_SCOPE_NORECLAIM,
        b"noreclaim,nofail" | b"nofail,noreclaim" => LOCK_SCOPE_NORECLAIM_NOFAIL,
        _ => return Err(BadValue("expected `report`, `noreclaim` or `noreclaim,nofail`")),
    };
    CONFIG.lock_scope.store(mode, Relaxed);
    Ok(())
}

fn set_soft_limit(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let (v, pct) = parse_size_or_percent(value)?;
    CONFIG.soft_limit.store(v, Relaxed);
    CONFIG.soft_limit_percent.store(pct, Relaxed);
    Ok(())
}

fn set_stats(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    CONFIG.stats.store(parse_bool(value)?, Relaxed);
    Ok(())
}

fn set_stats_sample(opt: &Opt, value: &[u8]) -> Result<(), BadValue> {
    let v = match parse_count(value)? {
        0 => return Err(BadValue("must be at least 1")),
        v => clamped(
            opt,
            value,
            v,
            1,
            STATS_SAMPLE_MAX,
            "the sampling period is a 32-bit count",
        ),
    };
    CONFIG.stats_sample.store(v, Relaxed);
    Ok(())
}

fn set_log(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    match value {
        b"warn" => log::set_enabled(true),
        b"off" => log::set_enabled(false),
        _ => return Err(BadValue("expected `warn` or `off`")),
    }
    Ok(())
}

fn set_stats_dir(_: &Opt, value: &[u8]) -> Result<(), BadValue> {
    if value.first() != Some(&b'/') {
        return Err(BadValue("expected an absolute directory path"));
    }
    if value.len() >= PATH_MAX_LEN || value.contains(&0) {
        return Err(BadValue("path too long"));
    }
    // SAFETY: only `load` writes, once, before publication (see PathBuf).
    let bytes = unsafe { &mut *CONFIG.stats_dir.bytes.get() };
    bytes[..value.len()].copy_from_slice(value);
    bytes[value.len()] = 0;
    CONFIG.stats_dir.len.store(value.len() as u64, Relaxed);
    Ok(())
}

/// Calls `f(name, value)` for every `NAME=value` entry of the environment.
pub fn for_each_env(mut f: impl FnMut(&[u8], &[u8])) {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is glibc's NULL-terminated array of C strings; it
    // is read here once, during load, before the program can change it.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            let entry = core::ffi::CStr::from_ptr(*p).to_bytes();
            if let Some(eq) = entry.iter().position(|&c| c == b'=') {
                f(&entry[..eq], &entry[eq + 1..]);
            }
            p = p.add(1);
        }
    }
}

/// True in secure-execution mode (`AT_SECURE`: set-user-id or
/// set-group-id programs, file capabilities, some LSM transitions), where
/// the environment belongs to a less privileged caller. Like glibc, which
/// ignores its malloc tunables then, and jemalloc, which reads its
/// `MALLOC_CONF` with `secure_getenv`, memscope then reads no `MEMSCOPE_*`
/// variable and forwards no `MALLOC_CONF`: the defaults apply (stats in
/// `/dev/shm`, diagnostics on), and nothing says so on stderr, which in
/// such a program belongs to that caller too.
pub fn secure_execution() -> bool {
    crate::os::secure_execution()
}

/// Reads every option from the environment. Called once by `init`.
/// `MEMSCOPE_LOG` is applied first so that `off` silences warnings about
/// the other variables too. Nothing is read in secure-execution mode.
pub fn load() {
    for opt in OPTIONS {
        // Cannot fail (a unit test applies every default).
        let _ = (opt.set)(opt, opt.default.as_bytes());
    }
    if secure_execution() {
        resolve_limits(false);
        return;
    }
    for_each_env(|name, value| {
        if name == b"MEMSCOPE_LOG" {
            if let Some(opt) = OPTIONS.iter().find(|o| o.name.as_bytes() == name) {
                apply(opt, value);
            }
        }
    });
    for_each_env(|name, value| {
        if name == b"MEMSCOPE_LOG"
            || !name.starts_with(b"MEMSCOPE_")
            || NOT_THE_LIBRARYS.iter().any(|n| n.as_bytes() == name)
        {
            return;
        }
        if name == b"MEMSCOPE_NORECLAIM_MAX" {
            CONFIG.noreclaim_max_explicit.store(true, Relaxed);
        }
        if value.ends_with(b"%") {
            CONFIG.percent_explicit.store(true, Relaxed);
        }
        match OPTIONS.iter().find(|o| o.name.as_bytes() == name) {
            Some(opt) => apply(opt, value),
            None => log::warn(format_args!(
                "{}: unknown variable, ignored (see `memscope-stat --help` or the README)",
                log::Bytes(name)
            )),
        }
    });
    // The default percentage (NOFAIL_MAX 100%) resolves against physical
    // memory here, the cgroup's limit once the maintenance thread runs: a
    // percentage the user gave reads the cgroup at once (a few file reads
    // at every exec otherwise).
    resolve_limits(CONFIG.percent_explicit.load(Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size(b"0"), Ok(0));
        assert_eq!(parse_size(b"4096"), Ok(4096));
        assert_eq!(parse_size(b"64K"), Ok(64 << 10));
        assert_eq!(parse_size(b"64k"), Ok(64 << 10));
        assert_eq!(parse_size(b"64KB"), Ok(64 << 10));
        assert_eq!(parse_size(b"64KiB"), Ok(64 << 10));
        assert_eq!(parse_size(b"32M"), Ok(32 << 20));
        assert_eq!(parse_size(b"1G"), Ok(1 << 30));
        assert_eq!(parse_size(b"2T"), Ok(2 << 40));
        assert_eq!(parse_size(b"12B"), Ok(12));
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_reason() {
        for bad in [&b""[..], b"K", b"-1", b"1.5G", b"12X", b"12 M", b"0x10", b"1MM"] {
            assert!(parse_size(bad).is_err(), "{:?}", core::str::from_utf8(bad));
        }
        assert_eq!(
            parse_size(b"99999999999999999999"),
            Err(BadValue("number too large"))
        );
        assert_eq!(parse_size(b"99999999999T"), Err(BadValue("size too large")));
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for t in [&b"1"[..], b"on", b"ON", b"yes", b"true", b"True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in [&b"0"[..], b"off", b"no", b"false", b"FALSE"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        for bad in [&b""[..], b"2", b"y", b"enable"] {
            assert!(parse_bool(bad).is_err());
        }
    }

    #[test]
    fn percentages_and_counts() {
        assert_eq!(parse_size_or_percent(b"50%"), Ok((50, true)));
        assert_eq!(parse_size_or_percent(b"1G"), Ok((1 << 30, false)));
        assert!(parse_size_or_percent(b"0%").is_err());
        assert!(parse_size_or_percent(b"101%").is_err());
        assert!(parse_size_or_percent(b"%").is_err());
        assert_eq!(parse_count(b"17"), Ok(17));
        assert!(parse_count(b"17K").is_err());
        assert!(parse_count(b"").is_err());
    }

    #[test]
    fn every_option_default_applies() {
        for opt in OPTIONS {
            assert_eq!((opt.set)(opt, opt.default.as_bytes()), Ok(()), "{}", opt.name);
        }
        assert_eq!(CONFIG.noreclaim_pool.load(Relaxed), 32 << 20);
        assert_eq!(CONFIG.stats_dir_cstr(), b"/dev/shm\0");
        assert!(CONFIG.stats.load(Relaxed));
    }

    #[test]
    fn readme_table_is_the_option_table() {
        // Read at run time: a packaged crate has no README of the repo.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let Ok(readme) = std::fs::read_to_string(path) else {
            eprintln!("skipped: {path} is not here (a packaged crate)");
            return;
        };
        for opt in OPTIONS {
            let row = format!("| `{}` | `{}` | {} |", opt.name, opt.default, opt.help);
            assert!(
                readme.lines().any(|l| l == row),
                "README.md's options table lacks this row (copy it from shim/src/base/config.rs):\n{row}"
            );
        }
    }
}
