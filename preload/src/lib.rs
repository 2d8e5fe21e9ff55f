//! libmemscope.so: memscope's allocator (`memscope-core`) under the C
//! names, for `LD_PRELOAD` and for C programs that link it. Everything is
//! in the core crate; this one only names it.

/// memscope's own Rust allocations go to jemalloc directly (the `_rjem_`
/// names), never through the exported `malloc`, with the NOFAIL reserve
/// behind it.
#[global_allocator]
static ALLOC: memscope_core::own_alloc::OwnAlloc = memscope_core::own_alloc::OwnAlloc;

memscope_core::export_c_abi!();

/// `log` and `exp` for jemalloc's heap profiler (its sampling intervals and
/// its dump's unbiasing), from the `libm` crate: `preload/build.rs` points
/// jemalloc's references at these (`--defsym`, local to the library), so
/// that the library does not need libm.so, whose loading cost every exec
/// under the preload about 0.1 ms (docs/BENCHMARKS.md).
#[no_mangle]
pub extern "C" fn memscope_libm_log(x: f64) -> f64 {
    libm::log(x)
}

/// See `memscope_libm_log`.
#[no_mangle]
pub extern "C" fn memscope_libm_exp(x: f64) -> f64 {
    libm::exp(x)
}
