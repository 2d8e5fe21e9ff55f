//! The reader against hostile files: random bytes, and valid segments with
//! random bytes changed or cut off. Whatever the file holds, opening,
//! snapshotting and formatting return a value or a clear error: they never
//! panic, hang or read out of bounds.

use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};

use memscope_abi::{self as abi, Header, Histogram, Slot};
use memscope_stat::{commands, report, segment::Segment};
use proptest::prelude::*;

const SLOTS: usize = 4;

/// A small valid segment: header, retired and overflow slots, two live
/// threads with some counts and samples.
fn valid_segment() -> Vec<u8> {
    let size = abi::HEADER_SIZE + SLOTS * abi::SLOT_SIZE;
    let mut b = vec![0u8; size];
    let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(&mut b, 0, &abi::MAGIC);
    put(
        &mut b,
        offset_of!(Header, byte_order),
        &abi::BYTE_ORDER_MARK.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, abi_major),
        &abi::ABI_MAJOR.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, header_size),
        &(abi::HEADER_SIZE as u32).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, ready), &abi::READY.to_ne_bytes());
    put(
        &mut b,
        offset_of!(Header, segment_size),
        &(size as u64).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, pid), &4242u32.to_ne_bytes());
    put(
        &mut b,
        offset_of!(Header, slot_count),
        &(SLOTS as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, slot_size),
        &(abi::SLOT_SIZE as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, bucket_count),
        &(abi::BUCKETS as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, slots_offset),
        &(abi::HEADER_SIZE as u64).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, sample_period), &64u64.to_ne_bytes());
    put(&mut b, offset_of!(Header, event_count), &19u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, timer_count), &4u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, cmdline_len), &9u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, cmdline), b"daemon\0-x");
    for i in abi::SLOT_FIRST_THREAD..SLOTS {
        let s = abi::HEADER_SIZE + i * abi::SLOT_SIZE;
        put(&mut b, s + offset_of!(Slot, state), &abi::SLOT_LIVE.to_ne_bytes());
        put(&mut b, s + offset_of!(Slot, tid), &(100 + i as u32).to_ne_bytes());
        put(&mut b, s + offset_of!(Slot, ops), &1000u64.to_ne_bytes());
        let h = s + offset_of!(Slot, latency);
        put(&mut b, h + offset_of!(Histogram, count), &3u64.to_ne_bytes());
        put(&mut b, h + offset_of!(Histogram, max_ns), &900u64.to_ne_bytes());
        put(
            &mut b,
            h + offset_of!(Histogram, buckets) + 8 * abi::bucket_of(50),
            &2u64.to_ne_bytes(),
        );
        put(
            &mut b,
            h + offset_of!(Histogram, buckets) + 8 * abi::bucket_of(900),
            &1u64.to_ne_bytes(),
        );
    }
    assert!(size_of::<Slot>() == abi::SLOT_SIZE);
    b
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("memscope-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Everything a user can do with a file, none of which may panic.
fn exercise(path: &Path) -> bool {
    match Segment::open(path).and_then(|s| s.snapshot()) {
        Ok(snap) => {
            let _ = report::text(&snap, true);
            let _ = report::json(&snap).to_string();
            let _ = report::prometheus(std::slice::from_ref(&snap), report::Labels::CommandAndPid);
            // Grouping by command: the snapshot twice, and as departed.
            let group = [snap.clone(), snap.clone(), snap.clone().departed()];
            let _ = report::prometheus(&group, report::Labels::Command);
            let _ = memscope_stat::plot::svg(&snap);
            let _ = commands::violations(&snap);
            let _ = commands::rates(&snap, &snap);
            true
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!((3..=8).contains(&e.exit_code()));
            false
        }
    }
}

#[test]
fn the_valid_segment_reads_back() {
    let p = dir().join("memscope.1");
    std::fs::write(&p, valid_segment()).unwrap();
    let s = Segment::open(&p).unwrap().snapshot().unwrap();
    assert_eq!(s.pid, 4242);
    assert_eq!(s.threads.len(), SLOTS - abi::SLOT_FIRST_THREAD);
    assert_eq!(s.total().ops[0][0], 2000);
    assert_eq!(s.cmdline, ["daemon", "-x"]);
    assert!(
        commands::violations(&s).is_empty(),
        "{:?}",
        commands::violations(&s)
    );
    assert!(exercise(&p));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..20_000), magic in any::<bool>()) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&abi::MAGIC);
        }
        let p = dir().join("memscope.2");
        std::fs::write(&p, &bytes).unwrap();
        prop_assert!(!exercise(&p) || bytes.len() >= abi::HEADER_SIZE);
    }

    #[test]
    fn mutated_segments_never_panic(
        edits in proptest::collection::vec((0usize..abi::HEADER_SIZE + SLOTS * abi::SLOT_SIZE, any::<u64>()), 1..24),
        header_bias in any::<bool>(),
        cut in proptest::option::of(0usize..abi::HEADER_SIZE + SLOTS * abi::SLOT_SIZE),
    ) {
        let mut b = valid_segment();
        for (pos, v) in edits {
            // Half the runs aim at the header, where the checks are.
            let pos = if header_bias { pos % 256 } else { pos };
            let end = (pos + 8).min(b.len());
            let pos = end.saturating_sub(8);
            b[pos..end].copy_from_slice(&v.to_ne_bytes()[..end - pos]);
        }
        if let Some(c) = cut {
            b.truncate(c);
        }
        let p = dir().join("memscope.3");
        std::fs::write(&p, &b).unwrap();
        exercise(&p);
    }
}
