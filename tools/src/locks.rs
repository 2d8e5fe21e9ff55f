//! `memscope-stat locks PID`: what a process's threads did while they held
//! program locks (lock sections: `libmemscope_locks.so`, or the program's
//! own `memscope_lock_acquired`/`memscope_lock_released`), per thread and
//! in total: sections and the ones that allocated, allocations and frees,
//! bytes, sizes, timed latencies, refusals; then the call sites that
//! allocated under locks and the lock calls whose sections allocated.

use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use serde_json::{json, Value};

use crate::report::{fmt_bytes, fmt_count, fmt_ns};
use crate::segment::{LockSnap, Snapshot};
use crate::sites::{Frame, Site};
use memscope_abi as abi;

/// `MEMSCOPE_LOCK_SCOPE` as the user writes it.
pub fn scope_name(flags: u32) -> String {
    match flags {
        0 => "report".into(),
        f if f == abi_flags::NORECLAIM => "noreclaim".into(),
        f if f == abi_flags::NORECLAIM | abi_flags::NOFAIL => "noreclaim,nofail".into(),
        f => format!("{f:#x}"),
    }
}

/// The scope flags' values (memscope.h).
mod abi_flags {
    pub const NORECLAIM: u32 = 0x01;
    pub const NOFAIL: u32 = 0x04;
}

/// The sites a lock report lists: allocations under locks, the lock calls
/// whose sections allocated, and refusals (a refused request's site).
fn lock_sites(sites: &[Site], kind: &str, top: usize) -> Vec<Site> {
    sites
        .iter()
        .filter(|s| s.kind == kind)
        .take(top)
        .cloned()
        .collect()
}

/// The rows: every live thread that entered a section, then exited and
/// overflow threads, then the total.
fn rows(s: &Snapshot) -> Vec<(String, LockSnap)> {
    let mut out = Vec::new();
    for t in &s.threads {
        if t.locks.sections > 0 || t.locks.allocs > 0 {
            out.push((
                format!("{} {}", t.tid, crate::report::thread_name(s.pid, t)),
                t.locks.clone(),
            ));
        }
    }
    for (label, slot) in [("exited threads", &s.retired), ("overflow threads", &s.overflow)] {
        if slot.locks.sections > 0 || slot.locks.allocs > 0 {
            out.push((format!("{label} ({})", slot.threads), slot.locks.clone()));
        }
    }
    out.push(("total".into(), s.total().locks));
    out
}

/// The text report.
pub fn text(s: &Snapshot, sites: &[Site], top: usize) -> String {
    let mut o = format!("{} (pid {})", s.command(), s.pid);
    if !s.live {
        o += ", exited";
    }
    o += "\n";
    let Some(scope) = s.lock_scope else {
        return o + "no lock sections: the process's memscope predates them (stats ABI 1.6)\n";
    };
    o += &format!("lock scope: {} (MEMSCOPE_LOCK_SCOPE)\n", scope_name(scope));
    let total = s.total().locks;
    if total.sections == 0 && total.allocs == 0 {
        return o + "no lock sections recorded (is libmemscope_locks.so preloaded after libmemscope.so? \
               memscope-stat run --locks MODE does that)\n";
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header([
        "thread",
        "sections",
        "allocating",
        "allocs",
        "frees",
        "bytes",
        "largest",
        "refused",
        "p50",
        "p99",
        "max",
    ]);
    for (label, l) in rows(s) {
        let q = |p: f64| l.latency.quantile(p).map_or("-".into(), fmt_ns);
        let mut row = vec![Cell::new(label)];
        for v in [
            fmt_count(l.sections),
            fmt_count(l.sections_allocating),
            fmt_count(l.allocs),
            fmt_count(l.frees),
            fmt_bytes(l.alloc_bytes),
            fmt_bytes(l.largest),
            fmt_count(l.refused),
            q(0.5),
            q(0.99),
            if l.latency.count > 0 {
                fmt_ns(l.latency.max_ns)
            } else {
                "-".into()
            },
        ] {
            row.push(Cell::new(v).set_alignment(CellAlignment::Right));
        }
        t.add_row(row);
    }
    o += &format!("{t}\n");
    o += &format!(
        "latency: {} of {} allocations timed (one in {} slow-path calls)\n",
        fmt_count(total.latency.count),
        fmt_count(total.allocs),
        s.sample_period
    );
    o += "sizes asked for under locks:\n";
    for (i, &n) in total.sizes.iter().enumerate() {
        if n > 0 {
            o += &format!("  {:>22}  {:>10}\n", size_range(i), fmt_count(n));
        }
    }
    if total.refused > 0 {
        o += &format!(
            "refused under locks: {} (the latest asked for {} bytes); sites under refused: below\n",
            fmt_count(total.refused),
            total.refused_last_bytes
        );
    }
    for (kind, title) in [
        ("lock_alloc", "where allocations under locks were made"),
        (
            "lock_taken",
            "lock calls whose sections allocated (sections; bytes the sections asked for)",
        ),
        ("refused", "refused requests"),
    ] {
        let of = lock_sites(sites, kind, top);
        if of.is_empty() {
            continue;
        }
        o += &format!("{title}:\n");
        for x in &of {
            let head = x.frames.first().map_or("?".into(), Frame::short);
            o += &format!(
                "  {:>10}  {head}  [{}, largest {}]\n",
                fmt_count(x.count),
                fmt_bytes(x.bytes),
                fmt_bytes(x.max)
            );
            for f in x.frames.iter().skip(1) {
                o += &format!("  {:>10}    <- {}\n", "", f.short());
            }
        }
    }
    o
}

/// `[lo, hi)` of size bucket `i`.
fn size_range(i: usize) -> String {
    if i == 0 {
        return "0 B".into();
    }
    let lo = 1u64 << (i - 1);
    if i + 1 >= abi::LOCK_SIZE_BUCKETS {
        return format!(">= {}", fmt_bytes(lo));
    }
    format!("[{}, {})", fmt_bytes(lo), fmt_bytes(lo << 1))
}

fn lock_json(l: &LockSnap) -> Value {
    let sizes: Vec<Value> = l
        .sizes
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| {
            json!({
                "from_bytes": if i == 0 { 0 } else { 1u64 << (i - 1) },
                "count": n,
            })
        })
        .collect();
    json!({
        "sections": l.sections,
        "sections_allocating": l.sections_allocating,
        "allocs": l.allocs,
        "frees": l.frees,
        "alloc_bytes": l.alloc_bytes,
        "largest": l.largest,
        "refused": l.refused,
        "refused_last_bytes": l.refused_last_bytes,
        "sizes": sizes,
        "latency": {
            "timed": l.latency.count,
            "p50_ns": l.latency.quantile(0.5),
            "p99_ns": l.latency.quantile(0.99),
            "max_ns": l.latency.max_ns,
        },
    })
}

/// The JSON report (schema in docs/STATS.md).
pub fn json(s: &Snapshot, sites: &[Site], top: usize) -> Value {
    let threads: Vec<Value> = s
        .threads
        .iter()
        .filter(|t| t.locks.sections > 0 || t.locks.allocs > 0)
        .map(|t| {
            let mut v = lock_json(&t.locks);
            v["tid"] = json!(t.tid);
            v["name"] = json!(crate::report::thread_name(s.pid, t));
            v
        })
        .collect();
    json!({
        "pid": s.pid,
        "live": s.live,
        "command": s.command(),
        "lock_scope": s.lock_scope.map(scope_name),
        "total": lock_json(&s.total().locks),
        "threads": threads,
        "exited": lock_json(&s.retired.locks),
        "overflow": lock_json(&s.overflow.locks),
        "sites": lock_sites(sites, "lock_alloc", top),
        "lock_calls": lock_sites(sites, "lock_taken", top),
        "refused_sites": lock_sites(sites, "refused", top),
    })
}

/// A few lines for `show`, if the process had lock sections.
pub fn summary(s: &Snapshot) -> Option<String> {
    let scope = s.lock_scope?;
    let l = s.total().locks;
    if l.sections == 0 && l.allocs == 0 {
        return None;
    }
    Some(format!(
        "lock sections ({}): {} entered, {} allocated; under locks {} allocations ({}, largest {}), {} frees, {} refused\n",
        scope_name(scope),
        fmt_count(l.sections),
        fmt_count(l.sections_allocating),
        fmt_count(l.allocs),
        fmt_bytes(l.alloc_bytes),
        fmt_bytes(l.largest),
        fmt_count(l.frees),
        fmt_count(l.refused),
    ))
}
