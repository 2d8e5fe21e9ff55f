//! `ffi-include/memscope_stats.h` must describe exactly this crate's
//! layout: compile a C program that prints every offset and size with the
//! system C compiler, and compare.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use memscope_abi::*;

fn c_layout() -> HashMap<String, u64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("memscope-stats-layout-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("ffi-include"))
        .arg(root.join("c-tests/stats/stats_layout.c"))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run the C compiler");
    assert!(status.success(), "{cc} failed to compile stats_layout.c");
    let text = Command::new(&out).output().expect("run stats_layout").stdout;
    let _ = std::fs::remove_file(&out);
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_c_header_matches_the_rust_layout() {
    let c = c_layout();
    let mut rust: Vec<(&str, u64)> = vec![
        ("header.magic", offset_of!(Header, magic)),
        ("header.byte_order", offset_of!(Header, byte_order)),
        ("header.abi_major", offset_of!(Header, abi_major)),
        ("header.abi_minor", offset_of!(Header, abi_minor)),
        ("header.header_size", offset_of!(Header, header_size)),
        ("header.ready", offset_of!(Header, ready)),
        ("header.segment_size", offset_of!(Header, segment_size)),
        ("header.pid", offset_of!(Header, pid)),
        ("header.slot_count", offset_of!(Header, slot_count)),
        ("header.slot_size", offset_of!(Header, slot_size)),
        ("header.bucket_count", offset_of!(Header, bucket_count)),
        ("header.slots_offset", offset_of!(Header, slots_offset)),
        ("header.start_unix_ns", offset_of!(Header, start_unix_ns)),
        ("header.sample_period", offset_of!(Header, sample_period)),
        ("header.folds_started", offset_of!(Header, folds_started)),
        ("header.folds_finished", offset_of!(Header, folds_finished)),
        ("header.threads_seen", offset_of!(Header, threads_seen)),
        (
            "header.threads_overflowed",
            offset_of!(Header, threads_overflowed),
        ),
        ("header.event_count", offset_of!(Header, event_count)),
        ("header.timer_count", offset_of!(Header, timer_count)),
        ("header.cmdline_len", offset_of!(Header, cmdline_len)),
        ("header.cmdline", offset_of!(Header, cmdline)),
        ("header.events", offset_of!(Header, events)),
        ("header.timers", offset_of!(Header, timers)),
        ("header.profile_request", offset_of!(Header, profile_request)),
        ("header.profile_done", offset_of!(Header, profile_done)),
        ("header.profile_status", offset_of!(Header, profile_status)),
        ("header.lib_version", offset_of!(Header, lib_version)),
        ("header.gauges_unix_ns", offset_of!(Header, gauges_unix_ns)),
        ("header.gauges", offset_of!(Header, gauges)),
        ("header.sites_offset", offset_of!(Header, sites_offset)),
        ("header.site_entries", offset_of!(Header, site_entries)),
        ("header.site_frames", offset_of!(Header, site_frames)),
        ("header.site_table_size", offset_of!(Header, site_table_size)),
        ("header.locks_offset", offset_of!(Header, locks_offset)),
        ("header.lock_stats_size", offset_of!(Header, lock_stats_size)),
        ("header.lock_scope", offset_of!(Header, lock_scope)),
        ("lock_stats.sections", offset_of!(LockStats, sections)),
        (
            "lock_stats.sections_allocating",
            offset_of!(LockStats, sections_allocating),
        ),
        ("lock_stats.allocs", offset_of!(LockStats, allocs)),
        ("lock_stats.frees", offset_of!(LockStats, frees)),
        ("lock_stats.alloc_bytes", offset_of!(LockStats, alloc_bytes)),
        ("lock_stats.largest", offset_of!(LockStats, largest)),
        ("lock_stats.refused", offset_of!(LockStats, refused)),
        (
            "lock_stats.refused_last_bytes",
            offset_of!(LockStats, refused_last_bytes),
        ),
        ("lock_stats.sizes", offset_of!(LockStats, sizes)),
        ("lock_stats.latency", offset_of!(LockStats, latency)),
        ("size.lock_stats", size_of::<LockStats>()),
        ("const.lock_size_buckets", LOCK_SIZE_BUCKETS),
        ("site.kind", offset_of!(Site, kind)),
        ("site.depth", offset_of!(Site, depth)),
        ("site.frames", offset_of!(Site, frames)),
        ("site.count", offset_of!(Site, count)),
        ("site.bytes", offset_of!(Site, bytes)),
        ("site.max", offset_of!(Site, max)),
        ("site.last", offset_of!(Site, last)),
        ("site_table.seq", offset_of!(SiteTable, seq)),
        ("site_table.clock", offset_of!(SiteTable, clock)),
        ("site_table.lock", offset_of!(SiteTable, lock)),
        ("site_table.entries", offset_of!(SiteTable, entries)),
        ("size.site", size_of::<Site>()),
        ("size.site_table", size_of::<SiteTable>()),
        ("const.site_frames", SITE_FRAMES),
        ("const.site_entries", SITE_ENTRIES),
        ("slot.seq", offset_of!(Slot, seq)),
        ("slot.state", offset_of!(Slot, state)),
        ("slot.tid", offset_of!(Slot, tid)),
        ("slot.name", offset_of!(Slot, name)),
        ("slot.threads", offset_of!(Slot, threads)),
        ("slot.allocated_bytes", offset_of!(Slot, allocated_bytes)),
        ("slot.deallocated_bytes", offset_of!(Slot, deallocated_bytes)),
        ("slot.ops", offset_of!(Slot, ops)),
        ("slot.latency", offset_of!(Slot, latency)),
        (
            "slot.nofail_wait_since_ns",
            offset_of!(Slot, nofail_wait_since_ns),
        ),
        ("slot.nofail_wait_bytes", offset_of!(Slot, nofail_wait_bytes)),
        ("slot.noreclaim_scope", offset_of!(Slot, noreclaim_scope)),
        ("histogram.count", offset_of!(Histogram, count)),
        ("histogram.sum_ns", offset_of!(Histogram, sum_ns)),
        ("histogram.max_ns", offset_of!(Histogram, max_ns)),
        ("histogram.buckets", offset_of!(Histogram, buckets)),
        ("size.header", size_of::<Header>()),
        ("size.slot", size_of::<Slot>()),
        ("size.histogram", size_of::<Histogram>()),
        ("size.scope_histogram", size_of::<ScopeHistogram>()),
        ("const.scope_buckets", SCOPE_BUCKETS),
        ("const.buckets", BUCKETS),
        ("const.thread_slots", THREAD_SLOTS),
        ("const.slot_total", SLOT_TOTAL),
        ("const.event_slots", EVENT_SLOTS),
        ("const.timer_slots", TIMER_SLOTS),
        ("const.gauge_slots", GAUGE_SLOTS),
    ]
    .into_iter()
    .map(|(k, v)| (k, v as u64))
    .collect();
    rust.push(("const.ready", READY as u64));
    rust.push(("const.byte_order", BYTE_ORDER_MARK as u64));
    rust.push(("const.abi_major", ABI_MAJOR as u64));
    assert_eq!(
        c.len(),
        rust.len(),
        "the C program and this test list different fields"
    );
    for (k, v) in rust {
        assert_eq!(c.get(k), Some(&v), "{k}: C says {:?}, Rust {v}", c.get(k));
    }
}
