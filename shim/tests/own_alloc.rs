//! memscope's own allocator (`OwnAlloc`, libmemscope.so's Rust global
//! allocator) keeps a layout's alignment through `realloc` (issue 24,
//! item 2): jemalloc's flags come from the new layout, as the sized free
//! that follows computes them. Called directly: this test binary's own
//! allocator is the system's, so jemalloc's small classes here hold only
//! these blocks.

use core::alloc::{GlobalAlloc, Layout};

use memscope_core::own_alloc::OwnAlloc;

/// Shrinks 64 live 16-aligned blocks of 16..=64 B to 1..=8 B and frees
/// them with the new layout, then takes 64 blocks of 16 B aligned 16: each result
/// aligned, each block still holding its own bytes after all are filled.
#[test]
fn shrinking_an_aligned_block_keeps_its_alignment() {
    let a = OwnAlloc;
    // SAFETY: non-zero sizes; every block freed with its current layout.
    unsafe {
        // 64 blocks live at once (each shrink lands on its own 8 B
        // region; a region reused would hide the misfiling), then freed.
        let shrunk: Vec<(*mut u8, usize)> = (0..64)
            .map(|i| {
                let (old, new) = (16 + 8 * (i % 7), 1 + i % 8);
                let layout = Layout::from_size_align(old, 16).unwrap();
                let p = a.alloc(layout);
                assert!(!p.is_null());
                let q = a.realloc(p, layout, new);
                assert!(!q.is_null());
                (q, new)
            })
            .collect();
        let shrunk_misaligned = shrunk
            .iter()
            .filter(|&&(q, _)| !(q as usize).is_multiple_of(16))
            .count();
        for (q, new) in shrunk {
            a.dealloc(q, Layout::from_size_align(new, 16).unwrap());
        }
        let layout = Layout::from_size_align(16, 16).unwrap();
        let blocks: Vec<*mut u8> = (0..64).map(|_| a.alloc(layout)).collect();
        assert!(blocks.iter().all(|p| !p.is_null()));
        let misaligned = blocks
            .iter()
            .filter(|&&p| !(p as usize).is_multiple_of(16))
            .count();
        for (i, &p) in blocks.iter().enumerate() {
            p.write_bytes(i as u8, 16);
        }
        let overwritten = blocks
            .iter()
            .enumerate()
            .filter(|&(i, &p)| std::slice::from_raw_parts(p, 16).iter().any(|&b| b != i as u8))
            .count();
        assert_eq!(
            (shrunk_misaligned, misaligned, overwritten),
            (0, 0, 0),
            "realloc results not 16-aligned: {shrunk_misaligned} of 64; \
             16 B blocks not 16-aligned: {misaligned} of 64; overwritten: {overwritten} of 64"
        );
        for p in blocks {
            a.dealloc(p, layout);
        }
    }
}

/// Every power-of-two alignment to 4096 × sizes across the 8 and 16 B
/// classes × realloc from each to each: aligned, contents kept, and each
/// block's usable size the one its new layout names (what the sized free
/// assumes).
#[test]
fn realloc_sweep_keeps_alignment_and_contents() {
    const SIZES: [usize; 20] = [
        1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 24, 31, 32, 33, 48, 64, 100, 5000,
    ];
    let a = OwnAlloc;
    let mut failures = Vec::new();
    for shift in 0..=12 {
        let align = 1usize << shift;
        for &from in &SIZES {
            for &to in &SIZES {
                let what = format!("align {align} {from} -> {to} B");
                let old = Layout::from_size_align(from, align).unwrap();
                let new = Layout::from_size_align(to, align).unwrap();
                // SAFETY: non-zero sizes; each block freed with the layout
                // it has at that point.
                unsafe {
                    let p = if from.is_multiple_of(2) {
                        a.alloc_zeroed(old)
                    } else {
                        a.alloc(old)
                    };
                    assert!(!p.is_null(), "{what}");
                    if !(p as usize).is_multiple_of(align) {
                        failures.push(format!("{what}: alloc at {p:p}"));
                    }
                    for i in 0..from {
                        *p.add(i) = (i * 7 + from) as u8;
                    }
                    let q = a.realloc(p, old, to);
                    assert!(!q.is_null(), "{what}");
                    if !(q as usize).is_multiple_of(align) {
                        failures.push(format!("{what}: realloc gave {q:p}"));
                    }
                    if (0..from.min(to)).any(|i| *q.add(i) != (i * 7 + from) as u8) {
                        failures.push(format!("{what}: contents lost"));
                    }
                    let usable = tikv_jemalloc_sys::sallocx(q.cast(), 0);
                    let want =
                        tikv_jemalloc_sys::nallocx(to, if align <= 16 && align <= to { 0 } else { shift });
                    if usable != want {
                        failures.push(format!(
                            "{what}: usable {usable}, its new layout's class is {want}"
                        ));
                    }
                    a.dealloc(q, new);
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(12)]
    );
}
