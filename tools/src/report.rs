//! What `show` prints: tables for people, JSON and Prometheus text for
//! machines. The JSON schema is documented in docs/STATS.md.

use std::fmt::Write as _;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, CellAlignment, Table};
use memscope_abi::{self as abi, names, CONTEXTS, OPS};
use serde_json::{json, Map, Value};

use crate::segment::{Hist, SlotSnap, Snapshot};

pub const JSON_SCHEMA: &str = "memscope-stat/1";

/// `1234` -> `1.23µs`.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.2}µs", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_bytes(n: u64) -> String {
    let f = n as f64;
    match n {
        // An overflowing request (memscope counts it as 2^64-1 bytes), or
        // a total that saturated on one.
        u64::MAX => "2^64-1 B (overflow)".into(),
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", f / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", f / 1_048_576.0),
        _ => format!("{:.2} GiB", f / 1_073_741_824.0),
    }
}

fn q(h: &Hist, p: f64) -> String {
    h.quantile(p).map_or_else(|| "-".into(), fmt_ns)
}

fn right(s: impl Into<String>) -> Cell {
    Cell::new(s.into()).set_alignment(CellAlignment::Right)
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    t
}

/// The human report of `show`.
pub fn text(s: &Snapshot, all_events: bool) -> String {
    let total = s.total();
    let mut out = String::new();
    let state = if s.live {
        "running"
    } else {
        "exited (stale segment)"
    };
    let _ = writeln!(
        out,
        "pid {}  {}  {state}{}",
        s.pid,
        s.command(),
        s.version().map_or(String::new(), |v| format!("  (memscope {v})"))
    );
    let _ = writeln!(
        out,
        "up {:.1}s   threads: {} live, {} exited, {} seen ({} beyond the {} slots)   timing 1 call in {} per thread and operation",
        s.uptime_s(),
        s.threads.len(),
        s.retired.threads,
        s.threads_seen,
        s.threads_overflowed,
        abi::THREAD_SLOTS,
        s.sample_period
    );
    let _ = writeln!(
        out,
        "bytes: {} allocated, {} freed (usable sizes)\n",
        fmt_bytes(total.allocated_bytes),
        fmt_bytes(total.deallocated_bytes)
    );

    match &s.gauges {
        Some(g) => {
            let get = |name: &str| g.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
            let _ = writeln!(
                out,
                "heap: {} allocated, {} active, {} resident, {} mapped, {} retained (jemalloc)",
                fmt_bytes(get("heap_allocated_bytes")),
                fmt_bytes(get("heap_active_bytes")),
                fmt_bytes(get("heap_resident_bytes")),
                fmt_bytes(get("heap_mapped_bytes")),
                fmt_bytes(get("heap_retained_bytes")),
            );
            let from = match get("memory_limit_from") {
                1 => "cgroup memory.max",
                2 => "cgroup memory.high",
                3 => "cgroup v1 memory.limit_in_bytes",
                _ => "physical memory",
            };
            let soft = match get("soft_limit_bytes") {
                0 => "off".to_string(),
                b => fmt_bytes(b),
            };
            let _ = writeln!(
                out,
                "limits: {} memory ({from}), soft limit {soft}",
                fmt_bytes(get("memory_limit_bytes")),
            );
            let _ = writeln!(
                out,
                "pool: {} reserved, {} committed, {} carved, {} ready in the depot, {} held in threads' lists; reserve: {} ready\n",
                fmt_bytes(get("pool_reserved_bytes")),
                fmt_bytes(get("pool_committed_bytes")),
                fmt_bytes(get("pool_carved_bytes")),
                fmt_bytes(get("pool_ready_bytes")),
                fmt_bytes(get("pool_thread_held_bytes")),
                fmt_bytes(get("reserve_ready_bytes")),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "heap and pool gauges: not published (the maintenance thread has not started)\n"
            );
        }
    }

    let mut t = table(&[
        "operation",
        "context",
        "calls",
        "timed",
        "p50",
        "p99",
        "p99.9",
        "max",
    ]);
    for op in 0..OPS {
        for ctx in 0..CONTEXTS {
            let h = &total.latency[op][ctx];
            let calls = total.ops[op][ctx];
            if calls == 0 && h.samples() == 0 {
                continue;
            }
            t.add_row(vec![
                Cell::new(names::OPS[op]),
                Cell::new(names::CONTEXTS[ctx]),
                right(fmt_count(calls)),
                right(fmt_count(h.samples())),
                right(q(h, 0.5)),
                right(q(h, 0.99)),
                right(q(h, 0.999)),
                right(if h.samples() > 0 {
                    fmt_ns(h.max_ns)
                } else {
                    "-".into()
                }),
            ]);
        }
    }
    let _ = writeln!(out, "Latency by operation and scope (all threads)\n{t}\n");

    let mut t = table(&[
        "tid",
        "thread",
        "allocs",
        "frees",
        "reallocs",
        "noreclaim",
        "nofail",
        "alloc p99",
        "allocated",
        "blocked",
    ]);
    let mut rows: Vec<(&str, &SlotSnap)> = s.threads.iter().map(|t| ("", t)).collect();
    if s.retired.threads > 0 {
        rows.push(("(exited)", &s.retired));
    }
    if s.overflow.threads > 0 {
        rows.push(("(overflow)", &s.overflow));
    }
    for (label, th) in rows {
        let per_op = |op: usize| th.ops[op].iter().fold(0u64, |a, &b| a.saturating_add(b));
        let per_ctx = |ctx: usize| (0..OPS).fold(0u64, |a, op| a.saturating_add(th.ops[op][ctx]));
        let mut alloc = Hist::empty();
        for ctx in 0..CONTEXTS {
            alloc.add(&th.latency[abi::OP_ALLOC][ctx]);
        }
        let (tid, name, blocked) = if label.is_empty() {
            let blocked = voluntary_switches(s.pid, th).map_or("-".into(), fmt_count);
            (th.tid.to_string(), thread_name(s.pid, th), blocked)
        } else {
            (format!("{} thr", th.threads), label.to_string(), "-".into())
        };
        t.add_row(vec![
            right(tid),
            Cell::new(name),
            right(fmt_count(per_op(abi::OP_ALLOC))),
            right(fmt_count(per_op(abi::OP_FREE))),
            right(fmt_count(per_op(abi::OP_REALLOC))),
            right(fmt_count(per_ctx(abi::CTX_NORECLAIM))),
            right(fmt_count(per_ctx(abi::CTX_NOFAIL))),
            right(q(&alloc, 0.99)),
            right(fmt_bytes(th.allocated_bytes)),
            right(blocked),
        ]);
    }
    let _ = writeln!(out, "Threads\n{t}\n");
    let _ = writeln!(
        out,
        "blocked: times the thread gave up its CPU to wait (a lock, a sleep, I/O), from /proc; memscope's calls\n\
         inside NORECLAIM never add to it.\n"
    );

    let scoped: Vec<&SlotSnap> = s
        .threads
        .iter()
        .chain([&s.retired, &s.overflow])
        .filter(|th| th.noreclaim_scope.samples() > 0)
        .collect();
    if !scoped.is_empty() {
        let mut t = table(&["tid", "thread", "timed", "p50", "p99", "p99.9", "max"]);
        for th in scoped {
            let (tid, name) = if std::ptr::eq(th, &s.retired) {
                (format!("{} thr", th.threads), "(exited)".to_string())
            } else if std::ptr::eq(th, &s.overflow) {
                (format!("{} thr", th.threads), "(overflow)".to_string())
            } else {
                (th.tid.to_string(), thread_name(s.pid, th))
            };
            let h = &th.noreclaim_scope;
            t.add_row(vec![
                right(tid),
                Cell::new(name),
                right(fmt_count(h.samples())),
                right(q(h, 0.5)),
                right(q(h, 0.99)),
                right(q(h, 0.999)),
                right(fmt_ns(h.max_ns)),
            ]);
        }
        let _ = writeln!(
            out,
            "NORECLAIM scopes held, push to pop (sampled; percentiles within a factor of 2)\n{t}\n"
        );
    }

    let waiting: Vec<&SlotSnap> = s
        .threads
        .iter()
        .filter(|th| th.nofail_waited_ns(s.taken_monotonic_ns).is_some())
        .collect();
    if !waiting.is_empty() {
        let mut t = table(&["tid", "thread", "request", "waiting for"]);
        for th in waiting {
            let waited = th.nofail_waited_ns(s.taken_monotonic_ns).unwrap_or(0);
            t.add_row(vec![
                right(th.tid.to_string()),
                Cell::new(thread_name(s.pid, th)),
                right(fmt_bytes(th.nofail_wait_bytes)),
                right(format!("{:.1}s", waited as f64 / 1e9)),
            ]);
        }
        let _ = writeln!(
            out,
            "Waiting in NOFAIL now (retrying: reclaimers, reserve, back-off)\n{t}\n"
        );
    }

    let mut t = table(&["event", "count", "meaning"]);
    for (i, (name, n)) in s.events.iter().enumerate() {
        if *n != 0 || all_events {
            t.add_row(vec![
                Cell::new(*name),
                right(fmt_count(*n)),
                Cell::new(names::EVENTS[i].1),
            ]);
        }
    }
    for (i, (name, h)) in s.timers.iter().enumerate() {
        if h.samples() != 0 || all_events {
            t.add_row(vec![
                Cell::new(format!("{name} (timed)")),
                right(fmt_count(h.samples())),
                Cell::new(format!(
                    "p50 {} p99 {} max {}: {}",
                    q(h, 0.5),
                    q(h, 0.99),
                    fmt_ns(h.max_ns),
                    names::TIMERS[i].1
                )),
            ]);
        }
    }
    if t.row_count() == 0 {
        let _ = writeln!(out, "Events: none yet (--all-events lists every counter)");
    } else {
        let _ = writeln!(out, "Events\n{t}");
    }
    out
}

/// The thread's voluntary context switches so far (`/proc/PID/task/TID/
/// status`): every wait on a lock, sleep or I/O; None once it is gone.
fn voluntary_switches(pid: u32, th: &SlotSnap) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{}/status", th.tid)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The thread's current name from /proc (it may have been renamed after
/// its first allocation), else the one recorded then.
pub fn thread_name(pid: u32, th: &SlotSnap) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{}/comm", th.tid))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| th.name.clone())
}

// ------------------------------------------------------------------ JSON

fn hist_json(h: &Hist) -> Value {
    let buckets: Vec<Value> = h
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, &n)| json!([h.lower(i), n]))
        .collect();
    json!({
        "samples": h.samples(),
        "sum_ns": h.sum_ns,
        "max_ns": h.max_ns,
        "p50_ns": h.quantile(0.5),
        "p99_ns": h.quantile(0.99),
        "p999_ns": h.quantile(0.999),
        "buckets": buckets,
    })
}

fn by_op_ctx<T>(f: impl Fn(usize, usize) -> T) -> Value
where
    T: Into<Value>,
{
    let mut ops = Map::new();
    for op in 0..OPS {
        let mut ctxs = Map::new();
        for ctx in 0..CONTEXTS {
            ctxs.insert(names::CONTEXTS[ctx].into(), f(op, ctx).into());
        }
        ops.insert(names::OPS[op].into(), Value::Object(ctxs));
    }
    Value::Object(ops)
}

fn slot_json(s: &SlotSnap) -> Value {
    json!({
        "threads": s.threads,
        "calls": by_op_ctx(|op, ctx| s.ops[op][ctx]),
        "allocated_bytes": s.allocated_bytes,
        "freed_bytes": s.deallocated_bytes,
        "latency": by_op_ctx(|op, ctx| hist_json(&s.latency[op][ctx])),
        "noreclaim_scope": hist_json(&s.noreclaim_scope),
    })
}

pub fn json(s: &Snapshot) -> Value {
    let per_thread: Vec<Value> = s
        .threads
        .iter()
        .map(|t| {
            let mut v = slot_json(t);
            v["tid"] = t.tid.into();
            v["name"] = thread_name(s.pid, t).into();
            v["voluntary_switches"] = voluntary_switches(s.pid, t).map_or(Value::Null, Value::from);
            v["nofail_wait"] = match t.nofail_waited_ns(s.taken_monotonic_ns) {
                Some(ns) => json!({ "bytes": t.nofail_wait_bytes, "waited_s": ns as f64 / 1e9 }),
                None => Value::Null,
            };
            v
        })
        .collect();
    let events: Map<String, Value> = s
        .events
        .iter()
        .map(|(n, v)| (n.to_string(), (*v).into()))
        .collect();
    let timers: Map<String, Value> = s
        .timers
        .iter()
        .map(|(n, h)| (n.to_string(), hist_json(h)))
        .collect();
    json!({
        "schema": JSON_SCHEMA,
        "pid": s.pid,
        "segment": s.path.display().to_string(),
        "live": s.live,
        "command": s.cmdline,
        "start_unix_ns": s.start_unix_ns,
        "uptime_s": s.uptime_s(),
        "sample_period": s.sample_period,
        "memscope_version": s.version(),
        "resident_bytes": s.resident_bytes(),
        "gauges": s.gauges.as_ref().map(|g| {
            g.iter()
                .map(|(n, v)| (n.to_string(), Value::from(*v)))
                .collect::<Map<String, Value>>()
        }),
        "threads_live": s.threads.len(),
        "threads_seen": s.threads_seen,
        "threads_overflowed": s.threads_overflowed,
        "total": slot_json(&s.total()),
        "threads": per_thread,
        "retired": slot_json(&s.retired),
        "overflow": slot_json(&s.overflow),
        "events": events,
        "slow_events": timers,
    })
}

// ------------------------------------------------------------ Prometheus

/// Histogram bounds in the exposition: powers of two from 16 ns to ~1.07 s,
/// each the lower edge of a segment bucket (of either scheme), so every
/// cumulative count is exact ("le" here means "shorter than", at
/// nanosecond resolution).
const PROM_BOUNDS: std::ops::RangeInclusive<u32> = 4..=30;

fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn prom_hist(out: &mut String, name: &str, labels: &str, h: &Hist) {
    let mut cum = 0u64;
    let mut next = 0usize;
    for k in PROM_BOUNDS {
        let bound = 1u64 << k;
        while next < h.buckets.len() && h.upper(next) <= bound {
            cum = cum.saturating_add(h.buckets[next]);
            next += 1;
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"{}\"}} {cum}",
            bound as f64 / 1e9
        );
    }
    let total = h.samples();
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {total}");
}

/// Series labels: `command` (the program's base name) by default, the
/// processes of one command added together, so that a fleet's series do
/// not multiply with every restart or, under a process-per-connection
/// server, with every connection; `pid` too when asked (`--pid-label`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    Command,
    CommandAndPid,
}

/// The text exposition format for every snapshot, one family at a time.
pub fn prometheus(snaps: &[Snapshot], labels: Labels) -> String {
    let grouped: Vec<Snapshot>;
    let snaps = match labels {
        Labels::CommandAndPid => snaps,
        Labels::Command => {
            let mut groups: std::collections::BTreeMap<String, Vec<Snapshot>> = Default::default();
            for s in snaps {
                groups
                    .entry(s.command_name().to_string())
                    .or_default()
                    .push(s.clone());
            }
            grouped = groups.into_values().filter_map(Snapshot::merge).collect();
            &grouped[..]
        }
    };
    let mut out = String::new();
    let base = |s: &Snapshot| match labels {
        Labels::Command => format!("command=\"{}\"", label_value(s.command_name())),
        Labels::CommandAndPid => format!("pid=\"{}\",command=\"{}\"", s.pid, label_value(s.command_name())),
    };
    let totals: Vec<SlotSnap> = snaps.iter().map(Snapshot::total).collect();

    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    family(
        &mut out,
        "memscope_calls_total",
        "counter",
        "Allocator calls by operation and scope context (exact).",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        for op in 0..OPS {
            for ctx in 0..CONTEXTS {
                let _ = writeln!(
                    out,
                    "memscope_calls_total{{{},op=\"{}\",context=\"{}\"}} {}",
                    base(s),
                    names::OPS[op],
                    names::CONTEXTS[ctx],
                    t.ops[op][ctx]
                );
            }
        }
    }
    family(
        &mut out,
        "memscope_allocated_bytes_total",
        "counter",
        "Usable bytes allocated.",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        let _ = writeln!(
            out,
            "memscope_allocated_bytes_total{{{}}} {}",
            base(s),
            t.allocated_bytes
        );
    }
    family(
        &mut out,
        "memscope_freed_bytes_total",
        "counter",
        "Usable bytes freed.",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        let _ = writeln!(
            out,
            "memscope_freed_bytes_total{{{}}} {}",
            base(s),
            t.deallocated_bytes
        );
    }
    family(
        &mut out,
        "memscope_call_duration_seconds",
        "histogram",
        "Sampled allocator call latency by operation and scope context.",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        for op in 0..OPS {
            for ctx in 0..CONTEXTS {
                let labels = format!(
                    "{},op=\"{}\",context=\"{}\"",
                    base(s),
                    names::OPS[op],
                    names::CONTEXTS[ctx]
                );
                prom_hist(
                    &mut out,
                    "memscope_call_duration_seconds",
                    &labels,
                    &t.latency[op][ctx],
                );
            }
        }
    }
    family(
        &mut out,
        "memscope_noreclaim_scope_duration_seconds",
        "histogram",
        "Sampled durations of outermost NORECLAIM scopes, push to pop (where a daemon scopes its critical sections: its lock-hold time).",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        prom_hist(
            &mut out,
            "memscope_noreclaim_scope_duration_seconds",
            &base(s),
            &t.noreclaim_scope,
        );
    }
    // Lock sections (ABI 1.6; libmemscope_locks.so): what the process
    // does while its threads hold program locks.
    type LockCounter = (&'static str, &'static str, fn(&crate::segment::LockSnap) -> u64);
    let lock_counters: [LockCounter; 6] = [
        (
            "memscope_lock_sections_total",
            "Lock sections entered (a thread's first program lock taken to its last released).",
            |l| l.sections,
        ),
        (
            "memscope_lock_sections_allocating_total",
            "Lock sections that allocated.",
            |l| l.sections_allocating,
        ),
        (
            "memscope_lock_allocs_total",
            "Allocations made while holding a program lock (exact).",
            |l| l.allocs,
        ),
        (
            "memscope_lock_frees_total",
            "Frees made while holding a program lock (exact).",
            |l| l.frees,
        ),
        (
            "memscope_lock_alloc_bytes_total",
            "Bytes asked for while holding a program lock.",
            |l| l.alloc_bytes,
        ),
        (
            "memscope_lock_refused_total",
            "Allocations made while holding a program lock that returned NULL.",
            |l| l.refused,
        ),
    ];
    for (name, help, get) in lock_counters {
        family(&mut out, name, "counter", help);
        for (s, t) in snaps.iter().zip(&totals) {
            let _ = writeln!(out, "{name}{{{}}} {}", base(s), get(&t.locks));
        }
    }
    family(
        &mut out,
        "memscope_lock_alloc_duration_seconds",
        "histogram",
        "Sampled latency of allocations made while holding a program lock.",
    );
    for (s, t) in snaps.iter().zip(&totals) {
        prom_hist(
            &mut out,
            "memscope_lock_alloc_duration_seconds",
            &base(s),
            &t.locks.latency,
        );
    }
    family(
        &mut out,
        "memscope_events_total",
        "counter",
        "memscope events (see memscope-stat show --all-events).",
    );
    for s in snaps {
        for (name, n) in &s.events {
            let _ = writeln!(out, "memscope_events_total{{{},event=\"{name}\"}} {n}", base(s));
        }
    }
    family(
        &mut out,
        "memscope_slow_event_duration_seconds",
        "histogram",
        "Duration of slow events (always timed).",
    );
    for s in snaps {
        for (name, h) in &s.timers {
            prom_hist(
                &mut out,
                "memscope_slow_event_duration_seconds",
                &format!("{},event=\"{name}\"", base(s)),
                h,
            );
        }
    }
    family(
        &mut out,
        "memscope_threads",
        "gauge",
        "Threads holding a stats slot now.",
    );
    for s in snaps {
        let _ = writeln!(out, "memscope_threads{{{}}} {}", base(s), s.threads.len());
    }
    family(
        &mut out,
        "memscope_threads_started_total",
        "counter",
        "Threads that ever called the allocator.",
    );
    for s in snaps {
        let _ = writeln!(
            out,
            "memscope_threads_started_total{{{}}} {}",
            base(s),
            s.threads_seen
        );
    }
    family(
        &mut out,
        "memscope_start_time_seconds",
        "gauge",
        "When the process's stats segment was created (Unix time).",
    );
    for s in snaps {
        let _ = writeln!(
            out,
            "memscope_start_time_seconds{{{}}} {}",
            base(s),
            s.start_unix_ns as f64 / 1e9
        );
    }
    family(
        &mut out,
        "memscope_sample_period",
        "gauge",
        "One call in this many is timed, per thread and operation.",
    );
    for s in snaps {
        let _ = writeln!(out, "memscope_sample_period{{{}}} {}", base(s), s.sample_period);
    }
    for (i, (name, help)) in abi::names::GAUGES.iter().enumerate() {
        let metric = format!("memscope_{name}");
        family(&mut out, &metric, "gauge", help);
        for s in snaps {
            if let Some(g) = &s.gauges {
                let _ = writeln!(out, "{metric}{{{}}} {}", base(s), g[i].1);
            }
        }
    }
    family(
        &mut out,
        "memscope_processes",
        "gauge",
        "Live processes under memscope the series stand for (labels: see --pid-label).",
    );
    for s in snaps {
        let _ = writeln!(out, "memscope_processes{{{}}} {}", base(s), s.processes);
    }
    family(
        &mut out,
        "memscope_build_info",
        "gauge",
        "1, labelled with the memscope version the process runs (unknown before 0.2.0; mixed: a group's processes differ).",
    );
    for s in snaps {
        let v = s
            .version()
            .unwrap_or_else(|| if s.processes > 1 { "mixed" } else { "unknown" }.into());
        let _ = writeln!(out, "memscope_build_info{{{},version=\"{v}\"}} 1", base(s));
    }
    family(
        &mut out,
        "memscope_resident_bytes",
        "gauge",
        "Resident memory of the process (/proc/PID/statm), read with the snapshot.",
    );
    for s in snaps {
        if let Some(b) = s.resident_bytes() {
            let _ = writeln!(out, "memscope_resident_bytes{{{}}} {b}", base(s));
        }
    }
    out
}
