//! The library directory `make install` puts libmemscope.so in
//! (`MEMSCOPE_LIBDIR`, set by the Makefile from `LIBDIR`), compiled in so
//! that `memscope-stat run` finds the library there.

fn main() {
    println!("cargo:rerun-if-env-changed=MEMSCOPE_LIBDIR");
    let libdir = std::env::var("MEMSCOPE_LIBDIR").unwrap_or_else(|_| "/usr/local/lib".into());
    println!("cargo:rustc-env=MEMSCOPE_LIBDIR={libdir}");
}
