//! The reader against hostile files: random bytes, and valid segments with
//! random bytes changed or cut off. Whatever the file holds, opening,
//! snapshotting and formatting return a value or a clear error: they never
//! panic, hang or read out of bounds.

mod common;

use std::path::{Path, PathBuf};

use common::{valid_segment, SLOTS};
use memscope_abi as abi;
use memscope_stat::{commands, report, segment::Segment};
use proptest::prelude::*;

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
