//! Gives libmemscope.so its SONAME, `libmemscope.so.<major>`, so that an
//! installed library is versioned as shared libraries are (`make install`
//! lays out `libmemscope.so.X.Y.Z`, `.so.X` and `.so`); and links the
//! unwinder std needs statically, and binds jemalloc's two libm calls to
//! the `libm` crate, so that the library brings neither libgcc_s nor libm
//! into every process it is preloaded into.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemscope.so.{major}");
    // No libgcc_s: loading it costs every exec under the preload its
    // relocation and its constructor (which runs CPUID several times, and
    // CPUID traps to the hypervisor in a VM). libgcc_eh, the same unwinder
    // as a static archive, comes before std's -lgcc_s on the link line, so
    // --as-needed drops libgcc_s; the library's version script keeps the
    // unwinder's symbols from being exported (programs keep their own).
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    // No libm: jemalloc's profiler is its only user (log, exp), and loading
    // it cost every exec about 0.1 ms here. Its references are bound to
    // the `libm` crate's functions (src/lib.rs) by symbols defined here,
    // which the library's version script keeps local: the program's own
    // `log` and `exp` stay libm's.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--defsym=log=memscope_libm_log");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--defsym=exp=memscope_libm_exp");
    println!("cargo:rerun-if-changed=build.rs");
}
