//! A Rust program's call sites resolve to Rust function names: under the
//! preloaded library, a function that allocates too much inside NORECLAIM
//! is named, demangled, by `memscope-stat sites` on this very process,
//! with the exact count. (Linked in without the preload, memscope records
//! no sites: docs/STATS.md, "Call sites".)

mod common;

use std::path::Path;
use std::process::Command;

use common::expect_loaded;

/// Three requests larger than any NORECLAIM pool block: refused.
#[inline(never)]
fn refused_in_rust() -> usize {
    let mut refused = 0;
    for _ in 0..3 {
        // SAFETY: malloc/free with no preconditions.
        unsafe {
            // black_box: the compiler may not drop a malloc+free pair.
            let p = std::hint::black_box(libc::malloc(8 << 20));
            if p.is_null() {
                refused += 1;
            }
            libc::free(p);
        }
    }
    refused
}

#[test]
fn rust_sites_are_named() {
    if !expect_loaded() {
        return;
    }
    let refused = memscope::with(
        memscope::Flags::NORECLAIM | memscope::Flags::NOWARN,
        refused_in_rust,
    );
    assert_eq!(refused, 3);
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/memscope-stat");
    let out = Command::new(&cli)
        .args(["sites", &std::process::id().to_string(), "--json"])
        .output()
        .expect("run memscope-stat sites");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sites: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let refused_here: Vec<&serde_json::Value> = sites
        .as_array()
        .expect("an array")
        .iter()
        .filter(|s| s["kind"] == "refused")
        .filter(|s| {
            s["frames"][0]["function"]
                .as_str()
                .is_some_and(|f| f.ends_with("sites::refused_in_rust"))
        })
        .collect();
    assert_eq!(refused_here.len(), 1, "{sites:#}");
    assert_eq!(refused_here[0]["count"], 3, "{sites:#}");
    assert!(
        refused_here[0]["frames"][0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("tests/sites.rs")),
        "{sites:#}"
    );
}
