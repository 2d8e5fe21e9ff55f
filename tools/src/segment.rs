//! Reading stats segments: finding them, validating them without trusting
//! them, and taking consistent snapshots.
//!
//! The file is read with `pread`, never mapped: a writer (or anyone) that
//! truncates it mid-read makes a short read and a clear error, not a
//! SIGBUS. A value read from a hostile file is only ever a number: every
//! index used below is bounded by this build's constants, and arithmetic
//! on read values saturates.

use std::fs::File;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use memscope_abi::{
    self as abi, Buckets, Header, Histogram, LockStats, Site, SiteTable, Slot, BUCKETS, CONTEXTS, OPS,
};

/// Why a segment could not be read. Each kind has its own exit status.
#[derive(Debug)]
pub enum ReadError {
    /// No segment for that pid (exit 3).
    NotFound(String),
    /// Not a memscope segment (exit 4).
    Foreign(String),
    /// A memscope segment of another ABI version or byte order (exit 5).
    Version(String),
    /// Too short, or sizes and offsets that do not add up (exit 6).
    Corrupt(String),
    /// Another user's file, a symlink, or unreadable (exit 7).
    Access(String),
    /// Still being initialised, or changing too fast to snapshot (exit 8).
    Busy(String),
}

impl ReadError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ReadError::NotFound(_) => 3,
            ReadError::Foreign(_) => 4,
            ReadError::Version(_) => 5,
            ReadError::Corrupt(_) => 6,
            ReadError::Access(_) => 7,
            ReadError::Busy(_) => 8,
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, msg) = match self {
            ReadError::NotFound(m) => ("not found", m),
            ReadError::Foreign(m) => ("not a memscope stats segment", m),
            ReadError::Version(m) => ("unsupported segment version", m),
            ReadError::Corrupt(m) => ("corrupt segment", m),
            ReadError::Access(m) => ("cannot read segment", m),
            ReadError::Busy(m) => ("segment busy", m),
        };
        write!(f, "{kind}: {msg}")
    }
}

/// How a histogram's buckets divide the nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Call latencies: four buckets per power of two (`abi::buckets`).
    #[default]
    LogLinear,
    /// Scope durations: one bucket per power of two (ABI 1.3).
    PowersOfTwo,
}

/// A latency histogram as read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    pub count: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
    pub buckets: Vec<u64>,
    pub scheme: Scheme,
}

impl Hist {
    pub fn empty() -> Hist {
        Hist {
            buckets: vec![0; BUCKETS],
            ..Hist::default()
        }
    }

    /// An empty scope-duration histogram.
    pub fn empty_scope() -> Hist {
        Hist {
            buckets: vec![0; abi::SCOPE_BUCKETS],
            scheme: Scheme::PowersOfTwo,
            ..Hist::default()
        }
    }

    /// The smallest value bucket `i` holds.
    pub fn lower(&self, i: usize) -> u64 {
        match self.scheme {
            Scheme::LogLinear => abi::bucket_lower(i),
            Scheme::PowersOfTwo => abi::buckets::scope_bucket_lower(i),
        }
    }

    /// One past the largest value bucket `i` holds (`u64::MAX` for the last).
    pub fn upper(&self, i: usize) -> u64 {
        match self.scheme {
            Scheme::LogLinear => abi::bucket_upper(i),
            Scheme::PowersOfTwo => abi::buckets::scope_bucket_upper(i),
        }
    }

    pub fn add(&mut self, o: &Hist) {
        self.count = self.count.saturating_add(o.count);
        self.sum_ns = self.sum_ns.saturating_add(o.sum_ns);
        self.max_ns = self.max_ns.max(o.max_ns);
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            *a = a.saturating_add(*b);
        }
    }

    /// `self - earlier`, for rates (max is this one's: a lifetime value).
    pub fn since(&self, earlier: &Hist) -> Hist {
        Hist {
            count: self.count.saturating_sub(earlier.count),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns: self.max_ns,
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            scheme: self.scheme,
        }
    }

    /// Samples, counted from the buckets.
    pub fn samples(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// The `q` quantile (0..=1) in ns: the upper bound of the bucket that
    /// holds it, capped by the maximum seen. None without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (i, &b) in self.buckets.iter().enumerate() {
            seen = seen.saturating_add(b);
            if seen >= rank {
                let upper = self.upper(i).saturating_sub(1);
                return Some(if self.max_ns > 0 {
                    upper.min(self.max_ns)
                } else {
                    upper
                });
            }
        }
        Some(self.max_ns)
    }
}

/// What a slot's threads did while they held program locks (ABI 1.6;
/// zero from older writers and processes without lock sections).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LockSnap {
    pub sections: u64,
    pub sections_allocating: u64,
    pub allocs: u64,
    pub frees: u64,
    pub alloc_bytes: u64,
    pub largest: u64,
    pub refused: u64,
    pub refused_last_bytes: u64,
    /// Allocations by size (`abi::lock_size_bucket`).
    pub sizes: Vec<u64>,
    /// Timed allocation latencies.
    pub latency: Hist,
}

impl LockSnap {
    pub fn empty() -> LockSnap {
        LockSnap {
            sizes: vec![0; abi::LOCK_SIZE_BUCKETS],
            latency: Hist::empty(),
            ..LockSnap::default()
        }
    }

    pub fn add(&mut self, o: &LockSnap) {
        for (a, b) in [
            (&mut self.sections, o.sections),
            (&mut self.sections_allocating, o.sections_allocating),
            (&mut self.allocs, o.allocs),
            (&mut self.frees, o.frees),
            (&mut self.alloc_bytes, o.alloc_bytes),
            (&mut self.refused, o.refused),
        ] {
            *a = a.saturating_add(b);
        }
        self.largest = self.largest.max(o.largest);
        if o.refused_last_bytes != 0 {
            self.refused_last_bytes = o.refused_last_bytes;
        }
        for (a, b) in self.sizes.iter_mut().zip(&o.sizes) {
            *a = a.saturating_add(*b);
        }
        self.latency.add(&o.latency);
    }
}

/// One slot as read: a live thread, or an aggregate.
#[derive(Clone, Debug)]
pub struct SlotSnap {
    pub tid: u32,
    pub name: String,
    pub threads: u64,
    pub allocated_bytes: u64,
    pub deallocated_bytes: u64,
    pub ops: [[u64; CONTEXTS]; OPS],
    pub latency: Vec<Vec<Hist>>, // [op][ctx]
    /// ABI 1.1 (0 in older segments): a NOFAIL request the thread waits
    /// on now, since when (CLOCK_MONOTONIC ns) and its size.
    pub nofail_wait_since_ns: u64,
    pub nofail_wait_bytes: u64,
    /// ABI 1.3 (empty in older segments): sampled NORECLAIM scope durations.
    pub noreclaim_scope: Hist,
    /// ABI 1.6: lock sections.
    pub locks: LockSnap,
}

impl SlotSnap {
    pub fn empty() -> SlotSnap {
        SlotSnap {
            tid: 0,
            name: String::new(),
            threads: 0,
            allocated_bytes: 0,
            deallocated_bytes: 0,
            ops: [[0; CONTEXTS]; OPS],
            latency: vec![vec![Hist::empty(); CONTEXTS]; OPS],
            nofail_wait_since_ns: 0,
            nofail_wait_bytes: 0,
            noreclaim_scope: Hist::empty_scope(),
            locks: LockSnap::empty(),
        }
    }

    /// How long the thread has been waiting in a NOFAIL retry, as of a
    /// snapshot taken at `taken_monotonic_ns`, if it is.
    pub fn nofail_waited_ns(&self, taken_monotonic_ns: u64) -> Option<u64> {
        (self.nofail_wait_since_ns != 0).then(|| taken_monotonic_ns.saturating_sub(self.nofail_wait_since_ns))
    }

    pub fn add(&mut self, o: &SlotSnap) {
        self.threads = self.threads.saturating_add(o.threads);
        self.allocated_bytes = self.allocated_bytes.saturating_add(o.allocated_bytes);
        self.deallocated_bytes = self.deallocated_bytes.saturating_add(o.deallocated_bytes);
        for op in 0..OPS {
            for ctx in 0..CONTEXTS {
                self.ops[op][ctx] = self.ops[op][ctx].saturating_add(o.ops[op][ctx]);
                self.latency[op][ctx].add(&o.latency[op][ctx]);
            }
        }
        self.noreclaim_scope.add(&o.noreclaim_scope);
        self.locks.add(&o.locks);
    }

    pub fn calls(&self) -> u64 {
        self.ops.iter().flatten().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// A consistent copy of a whole segment.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub path: PathBuf,
    pub pid: u32,
    /// A process holds the segment (it has not exited).
    pub live: bool,
    pub start_unix_ns: u64,
    pub taken_unix_ns: u64,
    /// CLOCK_MONOTONIC when the snapshot was taken (NOFAIL wait times).
    pub taken_monotonic_ns: u64,
    pub sample_period: u64,
    /// The writer's memscope version (`MAJOR << 16 | MINOR << 8 | PATCH`),
    /// 0 before ABI 1.2.
    pub lib_version: u32,
    /// ABI 1.3 memory gauges (`names::GAUGES`), when the process's
    /// maintenance thread has refreshed them; None otherwise.
    pub gauges: Option<Vec<(&'static str, u64)>>,
    /// The process's resident bytes when the snapshot was taken
    /// (`/proc/PID/statm`); None once it has exited.
    pub resident: Option<u64>,
    /// Processes this snapshot stands for: 1, or a group's size (`merge`).
    pub processes: u64,
    pub cmdline: Vec<String>,
    pub threads_seen: u64,
    pub threads_overflowed: u64,
    pub events: Vec<(&'static str, u64)>,
    pub timers: Vec<(&'static str, Hist)>,
    pub threads: Vec<SlotSnap>,
    pub retired: SlotSnap,
    pub overflow: SlotSnap,
    /// ABI 1.6: `MEMSCOPE_LOCK_SCOPE` (0: `report`, else scope flags);
    /// None from an older writer.
    pub lock_scope: Option<u32>,
}

impl Snapshot {
    /// Live threads, exited threads and overflow threads together.
    pub fn total(&self) -> SlotSnap {
        let mut t = SlotSnap::empty();
        for s in self.threads.iter().chain([&self.retired, &self.overflow]) {
            t.add(s);
        }
        t
    }

    /// The writer's memscope version as text, if the segment says.
    pub fn version(&self) -> Option<String> {
        let v = self.lib_version;
        (v != 0).then(|| format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff))
    }

    /// The process's resident memory when the snapshot was taken.
    pub fn resident_bytes(&self) -> Option<u64> {
        self.resident
    }

    /// The program's base name, as the Prometheus `command` label has it.
    pub fn command_name(&self) -> &str {
        self.cmdline
            .first()
            .map_or("?", |c| c.rsplit('/').next().unwrap_or(c))
    }

    /// One snapshot standing for several processes (of one command): calls,
    /// bytes, histograms, events, threads and resident bytes added; the
    /// oldest start; the version if they agree (else 0). `pid` is the
    /// first's; the group's size is `processes`. Every sum saturates: the
    /// values are a segment's, which any user can write, and a sum that
    /// wrapped would show another process's counters reset (two events at
    /// 2^63 read 0 under `serve`) and panic a debug build.
    pub fn merge(group: Vec<Snapshot>) -> Option<Snapshot> {
        let mut it = group.into_iter();
        let mut m = it.next()?;
        for s in it {
            m.live |= s.live;
            m.start_unix_ns = m.start_unix_ns.min(s.start_unix_ns);
            m.taken_unix_ns = m.taken_unix_ns.max(s.taken_unix_ns);
            // Departed processes (none left, see `departed`) do not
            // vote on the version.
            if m.processes == 0 {
                m.lib_version = s.lib_version;
            } else if s.processes > 0 && m.lib_version != s.lib_version {
                m.lib_version = 0;
            }
            m.resident = match (m.resident, s.resident) {
                (Some(a), Some(b)) => Some(a.saturating_add(b)),
                (a, b) => a.or(b),
            };
            m.gauges = match (m.gauges, s.gauges) {
                (Some(mut a), Some(b)) => {
                    for (x, (_, y)) in a.iter_mut().zip(b) {
                        // Memory adds up across processes; limits do not.
                        x.1 = if is_limit_gauge(x.0) {
                            x.1.max(y)
                        } else {
                            x.1.saturating_add(y)
                        };
                    }
                    Some(a)
                }
                (a, b) => a.or(b),
            };
            m.processes = m.processes.saturating_add(s.processes);
            m.threads_seen = m.threads_seen.saturating_add(s.threads_seen);
            m.threads_overflowed = m.threads_overflowed.saturating_add(s.threads_overflowed);
            for (e, (_, n)) in m.events.iter_mut().zip(&s.events) {
                e.1 = e.1.saturating_add(*n);
            }
            for (t, (_, h)) in m.timers.iter_mut().zip(&s.timers) {
                t.1.add(h);
            }
            m.threads.extend(s.threads);
            m.retired.add(&s.retired);
            m.overflow.add(&s.overflow);
        }
        Some(m)
    }

    /// What an exited process leaves to its command's sums: its counts,
    /// bytes, histograms and events (its live threads folded into the
    /// retired aggregate), no process, thread or resident bytes. An
    /// exporter adds it to the group so that the group's counters never
    /// go down when one of its processes exits.
    pub fn departed(mut self) -> Snapshot {
        for t in std::mem::take(&mut self.threads) {
            self.retired.add(&t);
        }
        self.live = false;
        self.resident = None;
        self.gauges = None;
        self.processes = 0;
        self
    }

    /// The command line as a shell would take it back: an argument that is
    /// empty or holds blanks or shell syntax is single-quoted (`bash -c
    /// 'sleep 2; true'`, `--save ''`), so that arguments stay apart; control
    /// characters become spaces, keeping a table row one line.
    pub fn command(&self) -> String {
        command_text(&self.cmdline)
    }

    pub fn uptime_s(&self) -> f64 {
        self.taken_unix_ns.saturating_sub(self.start_unix_ns) as f64 / 1e9
    }
}

/// The stats directory: `--dir`, else `$MEMSCOPE_STATS_DIR`, else /dev/shm.
pub fn stats_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("MEMSCOPE_STATS_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/dev/shm"))
}

/// `memscope.<pid>` or `memscope.<pid>.<n>`: the pid, if the name is one.
pub fn pid_of_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(abi::FILE_PREFIX)?;
    let (pid, suffix) = match rest.split_once('.') {
        Some((p, n)) => (p, Some(n)),
        None => (rest, None),
    };
    if let Some(n) = suffix {
        n.parse::<u32>().ok()?;
    }
    pid.parse().ok()
}

/// Every file in `dir` named like a segment, sorted by pid.
pub fn candidates(dir: &Path) -> Result<Vec<(u32, PathBuf)>, ReadError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ReadError::Access(format!("{}: {e}", dir.display())))?;
    let mut v: Vec<(u32, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((pid_of_name(&name)?, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// Gauges that are limits or codes, not amounts: a group shows the
/// largest, not the sum.
pub fn is_limit_gauge(name: &str) -> bool {
    matches!(
        name,
        "memory_limit_bytes" | "memory_limit_from" | "soft_limit_bytes"
    )
}

/// Resident bytes of `pid` now, from `/proc/PID/statm`.
fn read_resident(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(page.max(4096) as u64))
}

/// The ABI minor version a validated segment was written with.
pub fn abi_minor_of(seg: &Segment) -> Result<u16, ReadError> {
    let mut b = [0u8; 2];
    seg.read_at(&mut b, offset_of!(Header, abi_minor) as u64)?;
    Ok(u16::from_ne_bytes(b))
}

/// One call-site entry as a table holds it.
#[derive(Clone, Debug)]
pub struct RawSite {
    pub kind: u32,
    pub frames: Vec<u64>,
    pub count: u64,
    pub bytes: u64,
    pub max: u64,
}

/// An opened, validated segment.
pub struct Segment {
    pub path: PathBuf,
    file: File,
    len: u64,
}

fn corrupt(path: &Path, what: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt(format!("{}: {what}", path.display()))
}

impl Segment {
    /// Opens `path` (never following a symlink) and checks owner, size
    /// and header before anything is trusted.
    pub fn open(path: &Path) -> Result<Segment, ReadError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => ReadError::NotFound(format!("{}: no such file", path.display())),
                Some(libc::ELOOP) => {
                    ReadError::Access(format!("{}: is a symlink; not followed", path.display()))
                }
                _ => ReadError::Access(format!("{}: {e}", path.display())),
            })?;
        let md = file
            .metadata()
            .map_err(|e| ReadError::Access(format!("{}: {e}", path.display())))?;
        if !md.file_type().is_file() {
            return Err(ReadError::Foreign(format!(
                "{}: not a regular file",
                path.display()
            )));
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if md.uid() != euid && euid != 0 {
            return Err(ReadError::Access(format!(
                "{}: owned by uid {}, not by you (uid {euid})",
                path.display(),
                md.uid()
            )));
        }
        let seg = Segment {
            path: path.to_path_buf(),
            file,
            len: md.len(),
        };
        seg.validate()?;
        Ok(seg)
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), ReadError> {
        self.file.read_exact_at(buf, off).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt(
                    &self.path,
                    format_args!("truncated: {} bytes at {off} are past the end", buf.len()),
                )
            } else {
                ReadError::Access(format!("{}: {e}", self.path.display()))
            }
        })
    }

    /// The call-site tables (ABI 1.5; none from an older writer): every
    /// entry in use, each table copied between two equal even reads of
    /// its `seq` (a table still changing after a few tries is skipped).
    pub fn sites(&self) -> Result<Vec<RawSite>, ReadError> {
        if abi_minor_of(self)? < 5 {
            return Ok(Vec::new());
        }
        let off = self.u64_at(offset_of!(Header, sites_offset))?;
        if off == 0 {
            return Ok(Vec::new());
        }
        let mut w = [0u8; 4];
        let mut word = |field: usize| -> Result<u32, ReadError> {
            self.read_at(&mut w, field as u64)?;
            Ok(u32::from_ne_bytes(w))
        };
        let (entries, frames, size) = (
            word(offset_of!(Header, site_entries))? as usize,
            word(offset_of!(Header, site_frames))? as usize,
            word(offset_of!(Header, site_table_size))? as usize,
        );
        let slots = self.u64_at(offset_of!(Header, slot_count))? as u32 as usize;
        let seg_size = self.u64_at(offset_of!(Header, segment_size))?;
        if entries != abi::SITE_ENTRIES || frames != abi::SITE_FRAMES || size != abi::SITE_TABLE_SIZE {
            return Err(corrupt(
                &self.path,
                format_args!(
                    "call-site tables of {entries} entries, {frames} frames, {size} bytes: not this reader's"
                ),
            ));
        }
        let end = (slots as u64)
            .checked_mul(size as u64)
            .and_then(|t| t.checked_add(off));
        if end.is_none_or(|e| e > seg_size) || off % 8 != 0 {
            return Err(corrupt(
                &self.path,
                format_args!("{slots} call-site tables at offset {off} do not fit in {seg_size} bytes"),
            ));
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; size];
        let at = |b: &[u8], o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        for i in 0..slots {
            let base = off + (i * size) as u64;
            let mut ok = false;
            for _ in 0..8 {
                let before = self.u64_at(base as usize)?;
                if before % 2 == 1 {
                    std::thread::yield_now();
                    continue;
                }
                self.read_at(&mut buf, base)?;
                if self.u64_at(base as usize)? == before && at(&buf, 0) == before {
                    ok = true;
                    break;
                }
            }
            if !ok {
                continue;
            }
            for e in 0..entries {
                let o = offset_of!(SiteTable, entries) + e * size_of::<Site>();
                let b = &buf[o..o + size_of::<Site>()];
                let kind = u32::from_ne_bytes(b[0..4].try_into().unwrap_or([0; 4]));
                if kind == 0 || kind > abi::SITE_KIND_MAX {
                    continue;
                }
                let depth = (u32::from_ne_bytes(b[4..8].try_into().unwrap_or([0; 4])) as usize).min(frames);
                let f = offset_of!(Site, frames);
                out.push(RawSite {
                    kind,
                    frames: (0..depth).map(|k| at(b, f + 8 * k)).filter(|&a| a != 0).collect(),
                    count: at(b, offset_of!(Site, count)),
                    bytes: at(b, offset_of!(Site, bytes)),
                    max: at(b, offset_of!(Site, max)),
                });
            }
        }
        Ok(out)
    }

    /// The 8 bytes at `off`, as the writer's u64.
    pub fn u64_at(&self, off: usize) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read_at(&mut b, off as u64)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn validate(&self) -> Result<(), ReadError> {
        let p = &self.path;
        if self.len < 32 {
            return Err(if self.len == 0 {
                ReadError::Busy(format!("{}: empty (a process is creating it?)", p.display()))
            } else {
                corrupt(
                    p,
                    format_args!("{} bytes, shorter than the 32-byte prologue", self.len),
                )
            });
        }
        let mut pro = [0u8; 32];
        self.read_at(&mut pro, 0)?;
        if pro[..8] != abi::MAGIC {
            return Err(ReadError::Foreign(format!("{}: bad magic", p.display())));
        }
        let word = |o: usize| u32::from_ne_bytes([pro[o], pro[o + 1], pro[o + 2], pro[o + 3]]);
        let half = |o: usize| u16::from_ne_bytes([pro[o], pro[o + 1]]);
        let bom = word(offset_of!(Header, byte_order));
        if bom != abi::BYTE_ORDER_MARK {
            return Err(ReadError::Version(format!(
                "{}: byte order mark {bom:#010x} (written on a machine of the other byte order)",
                p.display()
            )));
        }
        let (major, minor) = (
            half(offset_of!(Header, abi_major)),
            half(offset_of!(Header, abi_minor)),
        );
        if major != abi::ABI_MAJOR {
            return Err(ReadError::Version(format!(
                "{}: ABI {major}.{minor}; this memscope-stat reads ABI {}.x",
                p.display(),
                abi::ABI_MAJOR
            )));
        }
        if word(offset_of!(Header, ready)) != abi::READY {
            return Err(ReadError::Busy(format!("{}: not initialised yet", p.display())));
        }
        let header_size = word(offset_of!(Header, header_size)) as usize;
        let seg_size = u64::from_ne_bytes(pro[24..32].try_into().unwrap_or([0; 8]));
        if header_size < size_of::<Header>() {
            return Err(corrupt(
                p,
                format_args!("header size {header_size} < {}", size_of::<Header>()),
            ));
        }
        if seg_size > self.len {
            return Err(corrupt(
                p,
                format_args!("truncated: {} bytes, the header says {seg_size}", self.len),
            ));
        }
        let slot_count = self.u64_at(offset_of!(Header, slot_count))? as u32 as usize;
        let slot_size = self.u64_at(offset_of!(Header, slot_size))? as u32 as usize;
        let buckets = self.u64_at(offset_of!(Header, bucket_count))? as u32 as usize;
        let slots_off = self.u64_at(offset_of!(Header, slots_offset))?;
        if slot_size != size_of::<Slot>() || buckets != BUCKETS {
            return Err(corrupt(
                p,
                format_args!(
                    "slot size {slot_size} / {buckets} buckets, expected {} / {BUCKETS}",
                    size_of::<Slot>()
                ),
            ));
        }
        let end = (slot_count as u64)
            .checked_mul(slot_size as u64)
            .and_then(|s| s.checked_add(slots_off));
        if slot_count < abi::SLOT_FIRST_THREAD
            || slots_off < header_size as u64
            || end.is_none_or(|e| e > seg_size)
        {
            return Err(corrupt(
                p,
                format_args!("{slot_count} slots at offset {slots_off} do not fit in {seg_size} bytes"),
            ));
        }
        Ok(())
    }

    /// True if a process holds the segment (its writer's shared lock).
    pub fn is_live(&self) -> bool {
        // SAFETY: a valid descriptor; a successful probe is undone at once.
        unsafe {
            let fd = self.file.as_raw_fd();
            if libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0 {
                libc::flock(fd, libc::LOCK_UN);
                false
            } else {
                true
            }
        }
    }

    /// A consistent snapshot: every thread slot between equal even
    /// sequence numbers, and no thread-exit fold under way meanwhile.
    pub fn snapshot(&self) -> Result<Snapshot, ReadError> {
        for _ in 0..ATTEMPTS {
            let before = self.u64_at(offset_of!(Header, folds_finished))?;
            let snap = self.read_all()?;
            let after = self.u64_at(offset_of!(Header, folds_started))?;
            if let Some(s) = snap {
                if before == after {
                    return Ok(s);
                }
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        Err(ReadError::Busy(format!(
            "{}: no consistent snapshot in {ATTEMPTS} attempts (threads starting and exiting very fast?)",
            self.path.display()
        )))
    }

    fn read_all(&self) -> Result<Option<Snapshot>, ReadError> {
        let mut hb = vec![0u8; size_of::<Header>()];
        self.read_at(&mut hb, 0)?;
        let h = Bytes(&hb);
        let slot_count = (h.u32(offset_of!(Header, slot_count)) as usize).min(abi::SLOT_TOTAL.max(4096));
        let slots_off = h.u64(offset_of!(Header, slots_offset));
        let event_count = (h.u32(offset_of!(Header, event_count)) as usize).min(abi::EVENT_SLOTS);
        let timer_count = (h.u32(offset_of!(Header, timer_count)) as usize).min(abi::TIMER_SLOTS);
        let cmd_len = (h.u32(offset_of!(Header, cmdline_len)) as usize).min(abi::CMDLINE_MAX);
        let cmd_off = offset_of!(Header, cmdline);
        let abi_minor = u16::from_ne_bytes([
            hb[offset_of!(Header, abi_minor)],
            hb[offset_of!(Header, abi_minor) + 1],
        ]);
        let cmdline = split_cmdline(&hb[cmd_off..cmd_off + cmd_len]);
        let known_events = &abi::names::EVENTS[..event_count.min(abi::names::EVENTS.len())];
        let events = known_events
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (*name, h.u64(offset_of!(Header, events) + 8 * i)))
            .collect();
        let known_timers = &abi::names::TIMERS[..timer_count.min(abi::names::TIMERS.len())];
        let timers = known_timers
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                (
                    *name,
                    h.hist(offset_of!(Header, timers) + i * size_of::<Histogram>()),
                )
            })
            .collect();
        let mut threads = Vec::new();
        let mut aggregates = Vec::new();
        let mut sb = vec![0u8; size_of::<Slot>()];
        let locks_off = self.locks_offset(&h, abi_minor, slot_count)?;
        let mut lb = vec![0u8; size_of::<LockStats>()];
        for i in 0..slot_count {
            let off = slots_off.saturating_add((i * size_of::<Slot>()) as u64);
            let Some(mut slot) = self.read_slot(off, &mut sb, i < abi::SLOT_FIRST_THREAD)? else {
                return Ok(None);
            };
            if let Some(lo) = locks_off {
                self.read_at(&mut lb, lo + (i * size_of::<LockStats>()) as u64)?;
                slot.1.locks = Bytes(&lb).lock_stats();
            }
            if i < abi::SLOT_FIRST_THREAD {
                aggregates.push(slot.1);
            } else if slot.0 == abi::SLOT_LIVE {
                threads.push(slot.1);
            }
        }
        let mut agg = aggregates.into_iter();
        Ok(Some(Snapshot {
            path: self.path.clone(),
            pid: h.u32(offset_of!(Header, pid)),
            live: self.is_live(),
            start_unix_ns: h.u64(offset_of!(Header, start_unix_ns)),
            taken_monotonic_ns: monotonic_ns(),
            taken_unix_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            sample_period: h.u64(offset_of!(Header, sample_period)),
            resident: if self.is_live() {
                read_resident(h.u32(offset_of!(Header, pid)))
            } else {
                None
            },
            processes: 1,
            lib_version: if abi_minor >= 2 {
                h.u32(offset_of!(Header, lib_version))
            } else {
                0
            },
            gauges: (abi_minor >= 3 && h.u64(offset_of!(Header, gauges_unix_ns)) != 0).then(|| {
                abi::names::GAUGES
                    .iter()
                    .enumerate()
                    .map(|(i, (name, _))| (*name, h.u64(offset_of!(Header, gauges) + 8 * i)))
                    .collect()
            }),
            cmdline,
            threads_seen: h.u64(offset_of!(Header, threads_seen)),
            threads_overflowed: h.u64(offset_of!(Header, threads_overflowed)),
            events,
            timers,
            threads,
            retired: agg.next().unwrap_or_else(SlotSnap::empty),
            overflow: agg.next().unwrap_or_else(SlotSnap::empty),
            lock_scope: (abi_minor >= 6).then(|| h.u32(offset_of!(Header, lock_scope))),
        }))
    }

    /// Where the lock blocks begin (ABI 1.6), checked against the file;
    /// None from an older writer.
    fn locks_offset(&self, h: &Bytes<'_>, abi_minor: u16, slots: usize) -> Result<Option<u64>, ReadError> {
        if abi_minor < 6 {
            return Ok(None);
        }
        let off = h.u64(offset_of!(Header, locks_offset));
        if off == 0 {
            return Ok(None);
        }
        let size = h.u32(offset_of!(Header, lock_stats_size)) as usize;
        if size != size_of::<LockStats>() {
            return Err(corrupt(
                &self.path,
                format_args!("lock blocks of {size} bytes: not this reader's"),
            ));
        }
        let seg_size = h.u64(offset_of!(Header, segment_size));
        let end = (slots as u64)
            .checked_mul(size as u64)
            .and_then(|t| t.checked_add(off));
        if end.is_none_or(|e| e > seg_size) || !off.is_multiple_of(8) {
            return Err(corrupt(
                &self.path,
                format_args!("{slots} lock blocks at offset {off} do not fit in {seg_size} bytes"),
            ));
        }
        Ok(Some(off))
    }

    /// Reads one slot between two equal even sequence numbers (aggregate
    /// slots, written with atomic adds, are read as they are). None: the
    /// writer kept it busy.
    fn read_slot(
        &self,
        off: u64,
        buf: &mut [u8],
        aggregate: bool,
    ) -> Result<Option<(u32, SlotSnap)>, ReadError> {
        for _ in 0..SLOT_ATTEMPTS {
            let s1 = self.u64_at_off(off)?;
            if s1 & 1 == 1 && !aggregate {
                std::hint::spin_loop();
                continue;
            }
            self.read_at(buf, off)?;
            let s2 = self.u64_at_off(off)?;
            if aggregate || s1 == s2 {
                let b = Bytes(buf);
                return Ok(Some((b.u32(offset_of!(Slot, state)), b.slot())));
            }
        }
        Ok(None)
    }

    fn u64_at_off(&self, off: u64) -> Result<u64, ReadError> {
        let mut b = [0u8; 8];
        self.read_at(&mut b, off)?;
        Ok(u64::from_ne_bytes(b))
    }
}

const ATTEMPTS: usize = 200;
const SLOT_ATTEMPTS: usize = 1000;

/// Field access on a copied byte buffer (never out of bounds: offsets come
/// from the layout, not from the file).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u64(&self, o: usize) -> u64 {
        self.0
            .get(o..o + 8)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u64::from_ne_bytes)
    }

    fn u32(&self, o: usize) -> u32 {
        self.0
            .get(o..o + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    }

    fn hist(&self, o: usize) -> Hist {
        self.buckets::<BUCKETS>(o, Scheme::LogLinear)
    }

    fn buckets<const N: usize>(&self, o: usize, scheme: Scheme) -> Hist {
        Hist {
            count: self.u64(o + offset_of!(Buckets<N>, count)),
            sum_ns: self.u64(o + offset_of!(Buckets<N>, sum_ns)),
            max_ns: self.u64(o + offset_of!(Buckets<N>, max_ns)),
            buckets: (0..N)
                .map(|i| self.u64(o + offset_of!(Buckets<N>, buckets) + 8 * i))
                .collect(),
            scheme,
        }
    }

    fn lock_stats(&self) -> LockSnap {
        LockSnap {
            sections: self.u64(offset_of!(LockStats, sections)),
            sections_allocating: self.u64(offset_of!(LockStats, sections_allocating)),
            allocs: self.u64(offset_of!(LockStats, allocs)),
            frees: self.u64(offset_of!(LockStats, frees)),
            alloc_bytes: self.u64(offset_of!(LockStats, alloc_bytes)),
            largest: self.u64(offset_of!(LockStats, largest)),
            refused: self.u64(offset_of!(LockStats, refused)),
            refused_last_bytes: self.u64(offset_of!(LockStats, refused_last_bytes)),
            sizes: (0..abi::LOCK_SIZE_BUCKETS)
                .map(|i| self.u64(offset_of!(LockStats, sizes) + 8 * i))
                .collect(),
            latency: self.hist(offset_of!(LockStats, latency)),
        }
    }

    fn slot(&self) -> SlotSnap {
        let name_off = offset_of!(Slot, name);
        let raw = self
            .0
            .get(name_off..name_off + abi::THREAD_NAME_MAX)
            .unwrap_or(&[]);
        let name = raw.split(|&c| c == 0).next().unwrap_or(&[]);
        let mut ops = [[0u64; CONTEXTS]; OPS];
        let mut latency = vec![vec![Hist::empty(); CONTEXTS]; OPS];
        for op in 0..OPS {
            for ctx in 0..CONTEXTS {
                let k = op * CONTEXTS + ctx;
                ops[op][ctx] = self.u64(offset_of!(Slot, ops) + 8 * k);
                latency[op][ctx] = self.hist(offset_of!(Slot, latency) + k * size_of::<Histogram>());
            }
        }
        SlotSnap {
            tid: self.u32(offset_of!(Slot, tid)),
            name: String::from_utf8_lossy(name).into_owned(),
            threads: self.u64(offset_of!(Slot, threads)),
            allocated_bytes: self.u64(offset_of!(Slot, allocated_bytes)),
            deallocated_bytes: self.u64(offset_of!(Slot, deallocated_bytes)),
            ops,
            latency,
            nofail_wait_since_ns: self.u64(offset_of!(Slot, nofail_wait_since_ns)),
            nofail_wait_bytes: self.u64(offset_of!(Slot, nofail_wait_bytes)),
            noreclaim_scope: self
                .buckets::<{ abi::SCOPE_BUCKETS }>(offset_of!(Slot, noreclaim_scope), Scheme::PowersOfTwo),
            locks: LockSnap::empty(),
        }
    }
}

/// CLOCK_MONOTONIC in ns: the clock the writer stamps NOFAIL waits with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The segment of `pid` in `dir`: the live one, else the newest stale one.
pub fn find(dir: &Path, pid: u32) -> Result<Segment, ReadError> {
    let mut best: Option<(bool, u64, Segment)> = None;
    let mut last_err = None;
    for (p, path) in candidates(dir)? {
        if p != pid {
            continue;
        }
        match Segment::open(&path) {
            Ok(seg) => {
                let live = seg.is_live();
                let start = seg.u64_at(offset_of!(Header, start_unix_ns)).unwrap_or(0);
                if best.as_ref().is_none_or(|(l, s, _)| (live, start) > (*l, *s)) {
                    best = Some((live, start, seg));
                }
            }
            Err(e) => last_err = Some(e),
        }
    }
    match (best, last_err) {
        (Some((_, _, seg)), _) => Ok(seg),
        (None, Some(e)) => Err(e),
        (None, None) => Err(ReadError::NotFound(format!(
            "no stats segment for pid {pid} in {} (is it running under memscope, with MEMSCOPE_STATS on and the same MEMSCOPE_STATS_DIR?)",
            dir.display()
        ))),
    }
}

/// A command line's arguments from its bytes, each followed by a NUL as in
/// `/proc/PID/cmdline` (the last one's may be cut off by the header's
/// limit). Empty arguments are kept (`--save ''`), except at the end: a
/// process that writes a title over its arguments (PostgreSQL) pads the
/// rest of the area with NULs, which are not arguments.
fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let end = bytes.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    if end == 0 {
        return Vec::new();
    }
    bytes[..end]
        .split(|&c| c == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// See `Snapshot::command`.
fn command_text(args: &[String]) -> String {
    if args.is_empty() {
        return "?".into();
    }
    let words: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    words.join(" ").replace(|c: char| c.is_control(), " ")
}

/// `arg` as one shell word: itself if it is plain, else single-quoted.
fn shell_word(arg: &str) -> String {
    const SPECIAL: &str = "'\"\\$`!*?[]{}()<>|&;#~";
    let plain = !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || SPECIAL.contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_keep_their_arguments_apart() {
        let args = split_cmdline(b"redis-server\0--save\0\0--port\x006379\0");
        assert_eq!(args, ["redis-server", "--save", "", "--port", "6379"]);
        let args: Vec<String> = ["bash", "-c", "sleep 2; true", "it's", "", "caf\u{e9}", "a\tb"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            command_text(&args),
            "bash -c 'sleep 2; true' 'it'\\''s' '' caf\u{e9} 'a b'"
        );
        assert_eq!(command_text(&[]), "?");
    }

    #[test]
    fn a_retitled_process_shows_its_title_not_the_padding() {
        assert_eq!(
            split_cmdline(b"postgres: checkpointer \0\0\0\0\0\0"),
            ["postgres: checkpointer "]
        );
        assert_eq!(split_cmdline(b"cut-off-without-nul"), ["cut-off-without-nul"]);
        assert!(split_cmdline(b"").is_empty() && split_cmdline(b"\0\0").is_empty());
    }
}
