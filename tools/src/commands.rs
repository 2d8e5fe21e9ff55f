//! `list`, `show`, `watch` and `gc`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use memscope_abi::{self as abi, names, CONTEXTS, OPS};

use crate::report::{self, fmt_count, fmt_ns};
use crate::segment::{self, ReadError, Segment, Snapshot};
use crate::{out, outln};

pub fn fail(e: &ReadError) -> ExitCode {
    eprintln!("memscope-stat: {e}");
    ExitCode::from(e.exit_code())
}

/// Live segments (and with `all`, stale ones): pid, state, uptime, threads, command.
pub fn list(dir: &Path, all: bool) -> Result<(), ReadError> {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec!["pid", "state", "uptime", "threads", "calls", "command"]);
    let mut problems = Vec::new();
    for (_, path) in segment::candidates(dir)? {
        let snap = Segment::open(&path).and_then(|s| s.snapshot());
        match snap {
            Ok(s) if s.live || all => {
                t.add_row(vec![
                    Cell::new(s.pid).set_alignment(CellAlignment::Right),
                    Cell::new(if s.live { "live" } else { "stale" }),
                    Cell::new(format!("{:.0}s", s.uptime_s())).set_alignment(CellAlignment::Right),
                    Cell::new(s.threads.len()).set_alignment(CellAlignment::Right),
                    Cell::new(fmt_count(s.total().calls())).set_alignment(CellAlignment::Right),
                    Cell::new(truncate(&s.command(), 60)),
                ]);
            }
            Ok(_) => {}
            Err(e) if all => problems.push(e.to_string()),
            Err(_) => {}
        }
    }
    if t.row_count() == 0 {
        outln!(
            "no {}segments in {}",
            if all { "" } else { "live " },
            dir.display()
        );
    } else {
        outln!("{t}");
    }
    for p in problems {
        outln!("skipped {p}");
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub enum Format {
    Text { all_events: bool },
    Json,
    Prometheus(report::Labels),
}

pub fn show(dir: &Path, pid: u32, format: Format) -> Result<(), ReadError> {
    let snap = segment::find(dir, pid)?.snapshot()?;
    let text = match format {
        Format::Text { all_events } => {
            let mut t = report::text(&snap, all_events);
            if let Some(l) = crate::locks::summary(&snap) {
                t += &format!("\n{l}(memscope-stat locks {pid} for threads, sizes and sites)\n");
            }
            // A short "top sites" section; `sites` has the rest.
            if let Ok(sites) = crate::sites::collect(dir, pid, false) {
                if !sites.is_empty() {
                    t += &format!("\ntop call sites (memscope-stat sites {pid} for all, with callers):\n");
                    t += &crate::sites::summary(&sites, 3);
                }
            }
            t
        }
        Format::Json => serde_json::to_string_pretty(&report::json(&snap)).unwrap_or_default() + "\n",
        Format::Prometheus(labels) => report::prometheus(std::slice::from_ref(&snap), labels),
    };
    out!("{text}");
    Ok(())
}

/// `locks`: what the process's threads did while holding program locks.
pub fn locks(dir: &Path, pid: u32, json: bool, top: usize) -> Result<(), ReadError> {
    let snap = segment::find(dir, pid)?.snapshot()?;
    let sites = crate::sites::collect(dir, pid, !json)?;
    if json {
        let v = crate::locks::json(&snap, &sites, top);
        out!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        out!("{}", crate::locks::text(&snap, &sites, top));
    }
    Ok(())
}

/// `sites`: the process's call sites, as text or JSON.
pub fn sites(dir: &Path, pid: u32, json: bool, top: usize) -> Result<(), ReadError> {
    let sites = crate::sites::collect(dir, pid, true)?;
    // Records a busy shared table dropped, and sites a full table evicted,
    // are not in the counts: say so (counts are then lower bounds).
    let snap = segment::find(dir, pid)?.snapshot()?;
    let event = |name: &str| {
        snap.events
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    let (dropped, evicted) = (event("sites_dropped"), event("sites_evicted"));
    if dropped + evicted > 0 {
        eprintln!(
            "memscope-stat: {dropped} call-site record(s) dropped (a shared table stayed busy, or a signal handler's \
             allocator call replaced the call's own entry) and {evicted} site(s) evicted from full tables: the counts \
             below are lower bounds"
        );
    }
    if json {
        let kept = crate::sites::top_per_kind(&sites, top);
        out!("{}\n", serde_json::to_string_pretty(&kept).unwrap_or_default());
    } else {
        out!("{}", crate::sites::text(&sites, top));
    }
    Ok(())
}

/// Writes the SVG of `show --plot` to `file`; the exit status on failure.
pub fn plot(dir: &Path, pid: u32, file: &Path) -> Result<(), std::process::ExitCode> {
    let snap = match segment::find(dir, pid).and_then(|s| s.snapshot()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("memscope-stat: {e}");
            return Err(std::process::ExitCode::from(e.exit_code()));
        }
    };
    let written =
        crate::plot::svg(&snap).and_then(|svg| std::fs::write(file, svg).map_err(|e| e.to_string()));
    match written {
        Ok(()) => {
            eprintln!("memscope-stat: wrote {}", file.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("memscope-stat: cannot write the plot to {}: {e}", file.display());
            Err(std::process::ExitCode::from(1))
        }
    }
}

/// Rates over each interval, redrawn in place until the process exits
/// (or `count` screens).
pub fn watch(dir: &Path, pid: u32, interval: Duration, count: Option<u64>) -> Result<(), ReadError> {
    let seg = segment::find(dir, pid)?;
    let mut prev = seg.snapshot()?;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut shown = 0u64;
    loop {
        std::thread::sleep(interval);
        let cur = seg.snapshot()?;
        let screen = rates(&prev, &cur);
        if tty {
            out!("\x1b[H\x1b[2J");
        }
        outln!("{screen}");
        shown += 1;
        if !cur.live || count.is_some_and(|c| shown >= c) {
            if !cur.live {
                outln!("process {pid} has exited");
            }
            return Ok(());
        }
        prev = cur;
    }
}

/// One `watch` screen: calls per second and interval percentiles.
pub fn rates(prev: &Snapshot, cur: &Snapshot) -> String {
    let dt = (cur.taken_unix_ns.saturating_sub(prev.taken_unix_ns) as f64 / 1e9).max(1e-3);
    let (a, b) = (prev.total(), cur.total());
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(vec![
        "operation",
        "context",
        "calls/s",
        "p50",
        "p99",
        "p99.9 (interval)",
    ]);
    for op in 0..OPS {
        for ctx in 0..CONTEXTS {
            let calls = b.ops[op][ctx].saturating_sub(a.ops[op][ctx]);
            let h = b.latency[op][ctx].since(&a.latency[op][ctx]);
            if calls == 0 && h.samples() == 0 {
                continue;
            }
            let qs = |p| h.quantile(p).map_or_else(|| "-".into(), fmt_ns);
            t.add_row(vec![
                Cell::new(names::OPS[op]),
                Cell::new(names::CONTEXTS[ctx]),
                Cell::new(fmt_count((calls as f64 / dt) as u64)).set_alignment(CellAlignment::Right),
                Cell::new(qs(0.5)).set_alignment(CellAlignment::Right),
                Cell::new(qs(0.99)).set_alignment(CellAlignment::Right),
                Cell::new(qs(0.999)).set_alignment(CellAlignment::Right),
            ]);
        }
    }
    let mut events = String::new();
    for ((name, n1), (_, n0)) in cur.events.iter().zip(&prev.events) {
        let d = n1.saturating_sub(*n0);
        if d > 0 {
            events.push_str(&format!("  {name} +{}/s", fmt_count((d as f64 / dt) as u64)));
        }
    }
    format!(
        "memscope-stat watch {}  {}   {} threads, up {:.0}s\n{t}\nevents:{}",
        cur.pid,
        truncate(&cur.command(), 50),
        cur.threads.len(),
        cur.uptime_s(),
        if events.is_empty() {
            " none this interval".into()
        } else {
            events
        }
    )
}

/// Removes segments no process holds, owned by the caller. A file that
/// is not yet initialised is left alone for a minute (its process may be
/// starting).
pub fn gc(dir: &Path, dry_run: bool) -> Result<u64, ReadError> {
    let mut removed = 0;
    for (_, path) in segment::candidates(dir)? {
        let stale = match Segment::open(&path) {
            Ok(seg) => !seg.is_live(),
            Err(ReadError::Busy(_)) => is_old_and_unlocked(&path),
            Err(ReadError::Corrupt(_)) | Err(ReadError::Version(_)) => is_old_and_unlocked(&path),
            Err(_) => false, // not ours, or not memscope's: never touched
        };
        if !stale {
            continue;
        }
        if dry_run {
            outln!("would remove {}", path.display());
            removed += 1;
        } else {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    outln!("removed {}", path.display());
                    removed += 1;
                }
                Err(e) => eprintln!("memscope-stat: {}: {e}", path.display()),
            }
        }
    }
    Ok(removed)
}

fn is_old_and_unlocked(path: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let Ok(md) = f.metadata() else { return false };
    // SAFETY: geteuid has no preconditions.
    if !md.file_type().is_file() || md.uid() != unsafe { libc::geteuid() } {
        return false;
    }
    let age = std::time::SystemTime::now()
        .duration_since(md.modified().unwrap_or(std::time::UNIX_EPOCH))
        .unwrap_or_default();
    // SAFETY: a valid descriptor; the probe is undone at once.
    let unlocked = unsafe {
        let fd = std::os::unix::io::AsRawFd::as_raw_fd(&f);
        let ok = libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) == 0;
        if ok {
            libc::flock(fd, libc::LOCK_UN);
        }
        ok
    };
    unlocked && age > Duration::from_secs(60)
}

/// Snapshots of every live segment the caller can read (for `serve`).
pub fn all_live(dir: &Path) -> Vec<Snapshot> {
    segment::candidates(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, p)| Segment::open(&p).ok())
        .filter(|s| s.is_live())
        .filter_map(|s| s.snapshot().ok())
        .collect()
}

#[allow(dead_code)]
const _: () = assert!(abi::OPS == OPS);

/// What a consistent snapshot guarantees, checked on one. Returns the
/// violations found (empty: none).
pub fn violations(s: &Snapshot) -> Vec<String> {
    let mut v = Vec::new();
    let slots = s
        .threads
        .iter()
        .map(|t| (format!("thread {}", t.tid), t))
        .chain([("retired".to_string(), &s.retired)]);
    for (who, t) in slots {
        for op in 0..OPS {
            for ctx in 0..CONTEXTS {
                let h = &t.latency[op][ctx];
                let what = format!("{who} {}/{}", names::OPS[op], names::CONTEXTS[ctx]);
                if h.count != h.samples() {
                    v.push(format!(
                        "{what}: count {} but buckets hold {}",
                        h.count,
                        h.samples()
                    ));
                }
                if h.samples() > t.ops[op][ctx] {
                    v.push(format!(
                        "{what}: {} timed but {} calls",
                        h.samples(),
                        t.ops[op][ctx]
                    ));
                }
                if let Some(top) = h.buckets.iter().rposition(|&n| n > 0) {
                    if h.max_ns < h.lower(top) || h.max_ns >= h.upper(top) {
                        v.push(format!("{what}: max {} outside its bucket {top}", h.max_ns));
                    }
                }
            }
        }
    }
    v
}

/// Snapshots PID's segment for `seconds`, checking each and that the
/// process totals never go down. Returns (snapshots, violations).
pub fn check(dir: &Path, pid: u32, seconds: f64) -> Result<(u64, Vec<String>), ReadError> {
    let seg = segment::find(dir, pid)?;
    let start = std::time::Instant::now();
    let mut n = 0u64;
    let mut found = Vec::new();
    let mut prev: Option<[[u64; CONTEXTS]; OPS]> = None;
    while start.elapsed().as_secs_f64() < seconds || n == 0 {
        let s = seg.snapshot()?;
        found.extend(violations(&s));
        let ops = s.total().ops;
        if let Some(p) = prev {
            for op in 0..OPS {
                for ctx in 0..CONTEXTS {
                    if ops[op][ctx] < p[op][ctx] {
                        found.push(format!(
                            "total {}/{} went down: {} -> {}",
                            names::OPS[op],
                            names::CONTEXTS[ctx],
                            p[op][ctx],
                            ops[op][ctx]
                        ));
                    }
                }
            }
        }
        prev = Some(ops);
        n += 1;
        if !s.live {
            break;
        }
    }
    Ok((n, found))
}
