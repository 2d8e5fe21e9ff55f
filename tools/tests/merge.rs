//! `Snapshot::merge` (a command's processes added together, as `serve` and
//! `show --prometheus` group them) saturates every sum (issue 24, item
//! 10): a segment's counters are numbers a hostile user may write, and a
//! sum that wraps turns another command's counters into a reset
//! (2^63 + 2^63 read as 0). In a debug build a wrap is also a panic: run
//! `cargo test -p memscope-stat --test merge` (no --release) to fuzz that.

mod common;

use std::io::{Read, Write};
use std::mem::offset_of;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use memscope_abi::Header;

use memscope_abi::names;
use memscope_stat::report::{self, Labels};
use memscope_stat::segment::{is_limit_gauge, Hist, SlotSnap, Snapshot};
use proptest::prelude::*;

/// A snapshot of one process whose counters, events, gauges, resident
/// bytes, thread counts and histograms all read `v`.
fn snap(v: u64) -> Snapshot {
    let mut slot = SlotSnap::empty();
    slot.tid = 7;
    slot.threads = 1;
    slot.allocated_bytes = v;
    slot.deallocated_bytes = v;
    for row in slot.ops.iter_mut() {
        row.fill(v);
    }
    for h in slot.latency.iter_mut().flatten() {
        fill_hist(h, v);
    }
    fill_hist(&mut slot.noreclaim_scope, v);
    let mut timer = Hist::empty();
    fill_hist(&mut timer, v);
    Snapshot {
        path: PathBuf::from("/nonexistent/memscope.1"),
        pid: 1,
        live: true,
        start_unix_ns: 1,
        taken_unix_ns: 2,
        taken_monotonic_ns: 2,
        sample_period: 64,
        lib_version: 0x200,
        gauges: Some(names::GAUGES.iter().map(|(n, _)| (*n, v)).collect()),
        resident: Some(v),
        processes: v,
        cmdline: vec!["daemon".into()],
        threads_seen: v,
        threads_overflowed: v,
        events: names::EVENTS.iter().map(|(n, _)| (*n, v)).collect(),
        timers: names::TIMERS.iter().map(|(n, _)| (*n, timer.clone())).collect(),
        threads: vec![slot.clone()],
        retired: slot.clone(),
        overflow: slot,
        lock_scope: Some(0),
    }
}

fn fill_hist(h: &mut Hist, v: u64) {
    h.count = v;
    h.sum_ns = v;
    h.max_ns = v;
    h.buckets.fill(v);
}

/// Every value `merge` adds, by name, for comparing a merge with the sums
/// it should hold.
fn sums(s: &Snapshot) -> Vec<(String, u64)> {
    let mut v = vec![
        ("processes".to_string(), s.processes),
        ("threads_seen".into(), s.threads_seen),
        ("threads_overflowed".into(), s.threads_overflowed),
        ("resident".into(), s.resident.unwrap_or(0)),
    ];
    v.extend(s.events.iter().map(|(n, x)| (format!("event {n}"), *x)));
    // A departed process has no gauges (None): read as 0, as merge adds.
    for (n, _) in names::GAUGES.iter().filter(|(n, _)| !is_limit_gauge(n)) {
        let x = s.gauges.iter().flatten().find(|(g, _)| g == n).map_or(0, |g| g.1);
        v.push((format!("gauge {n}"), x));
    }
    for (n, h) in &s.timers {
        v.push((format!("timer {n} count"), h.count));
        v.push((format!("timer {n} samples"), h.samples()));
    }
    let t = s.total();
    v.push(("calls".into(), t.calls()));
    v.push(("allocated_bytes".into(), t.allocated_bytes));
    v
}

#[test]
fn two_counters_at_2_63_add_to_the_maximum_not_to_zero() {
    let half = 1u64 << 63;
    let m = Snapshot::merge(vec![snap(half), snap(half)]).unwrap();
    let wrapped: Vec<_> = sums(&m).into_iter().filter(|(_, x)| *x != u64::MAX).collect();
    assert!(wrapped.is_empty(), "sums that are not u64::MAX: {wrapped:?}");
    // What `serve` shows: the command's row, saturated.
    let prom = report::prometheus(&[snap(half), snap(half)], Labels::Command);
    for series in [
        "memscope_events_total{command=\"daemon\",event=\"pool_refills\"}",
        "memscope_processes{command=\"daemon\"}",
        "memscope_threads_started_total{command=\"daemon\"}",
        "memscope_resident_bytes{command=\"daemon\"}",
    ] {
        let line = prom.lines().find(|l| l.starts_with(series)).unwrap_or("(none)");
        assert_eq!(line, format!("{series} {}", u64::MAX), "in serve's output");
    }
}

/// Values near the ends of the range, where sums wrap.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..1000u64,
        (u64::MAX - 1000)..=u64::MAX,
        Just(1u64 << 63),
        ((1u64 << 63) - 1000)..((1u64 << 63) + 1000),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random groups of 1 to 6 snapshots, some departed (as `serve` keeps
    /// an exited process's sums): the merge never panics (debug builds
    /// check every addition) and each sum is the saturating sum.
    #[test]
    fn merge_saturates_every_sum(group in proptest::collection::vec((value(), any::<bool>()), 1..6)) {
        let snaps: Vec<Snapshot> = group
            .iter()
            .map(|&(v, gone)| if gone { snap(v).departed() } else { snap(v) })
            .collect();
        let want = snaps.iter().map(sums).reduce(|a, b| {
            a.into_iter().zip(b).map(|((n, x), (_, y))| (n, x.saturating_add(y))).collect()
        }).unwrap();
        let merged = Snapshot::merge(snaps.clone()).unwrap();
        // Fields a departed process drops (resident, gauges) are summed
        // over the live ones only, which `sums` reads as 0: the same.
        prop_assert_eq!(sums(&merged), want);
        // Everything that formats a group must not panic either.
        let _ = report::prometheus(&snaps, Labels::Command);
        let _ = report::text(&merged, true);
        let _ = report::json(&merged).to_string();
        let _ = memscope_stat::plot::svg(&merged);
    }
}

/// End to end: two segments of one command, each with `pool_refills` at
/// 2^63, held live (a shared lock, as a writer holds it), served by the
/// real `memscope-stat serve`: the command's row shows the maximum, as
/// `show` does for each alone, not 0.
#[test]
fn serve_shows_two_counters_at_2_63_saturated() {
    let dir = std::env::temp_dir().join(format!("memscope-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut held = Vec::new();
    for pid in [4242u32, 4243] {
        let mut b = common::valid_segment();
        let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(&mut b, offset_of!(Header, pid), &pid.to_ne_bytes());
        // names::EVENTS[0] is pool_refills.
        assert_eq!(names::EVENTS[0].0, "pool_refills");
        put(&mut b, offset_of!(Header, events), &(1u64 << 63).to_ne_bytes());
        let path = dir.join(format!("memscope.{pid}"));
        std::fs::write(&path, &b).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: a valid descriptor, kept open (and the lock held) below.
        assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) }, 0);
        held.push(f);
    }
    // A free port: bound, read, released (serve binds it again at once).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_memscope-stat"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
            c.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut s = String::new();
            c.read_to_string(&mut s)?;
            Ok(s)
        });
        match got {
            Ok(s) if s.contains("memscope_processes") => break s,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => {
                let _ = serve.kill();
                panic!("no metrics from serve on port {port}: {other:?}");
            }
        }
    };
    let _ = serve.kill();
    let _ = serve.wait();
    drop(held);
    let _ = std::fs::remove_dir_all(&dir);
    let line = |series: &str| {
        body.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or("(none)")
            .to_string()
    };
    assert_eq!(
        line("memscope_processes{command=\"daemon\"}"),
        "memscope_processes{command=\"daemon\"} 2"
    );
    let series = "memscope_events_total{command=\"daemon\",event=\"pool_refills\"}";
    assert_eq!(line(series), format!("{series} {}", u64::MAX), "serve's output");
}
