//! Compiles `csrc/jemalloc_tsd.c`, the one C file of memscope-core, against
//! the headers of the jemalloc that tikv-jemalloc-sys configured and built
//! (it names its output directory as `DEP_JEMALLOC_ROOT`): the file reads
//! the address of a field of jemalloc's thread data, whose layout only
//! those headers know (`stats::thread::learn_byte_counters`).

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc/jemalloc_tsd.c");
    let Some(root) = env::var_os("DEP_JEMALLOC_ROOT") else {
        panic!("tikv-jemalloc-sys did not name its build directory (DEP_JEMALLOC_ROOT)");
    };
    let include = PathBuf::from(root).join("build").join("include");
    // The headers of jemalloc's own build tree: absent when tikv-jemalloc-sys
    // links a jemalloc built elsewhere (JEMALLOC_OVERRIDE), whose thread
    // data layout nothing here could know.
    let preamble = include.join("jemalloc/internal/jemalloc_preamble.h");
    if !preamble.is_file() {
        panic!(
            "{} is missing: memscope needs the jemalloc that tikv-jemalloc-sys builds from \
             source (JEMALLOC_OVERRIDE is not supported)",
            preamble.display()
        );
    }
    cc::Build::new()
        .file("csrc/jemalloc_tsd.c")
        .include(&include)
        .define("_GNU_SOURCE", None)
        .define("_REENTRANT", None)
        .flag("-std=gnu11")
        .flag("-fvisibility=hidden")
        .warnings_into_errors(true)
        .extra_warnings(true)
        .compile("memscope_jemalloc_tsd");
}
