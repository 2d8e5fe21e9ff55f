//! libmemscope.so: memscope's allocator (`memscope-core`) under the C
//! names, for `LD_PRELOAD` and for C programs that link it. Everything is
//! in the core crate; this one only names it.

/// memscope's own Rust allocations go to jemalloc directly (the `_rjem_`
/// names), never through the exported `malloc`, with the NOFAIL reserve
/// behind it.
#[global_allocator]
static ALLOC: memscope_core::own_alloc::OwnAlloc = memscope_core::own_alloc::OwnAlloc;

memscope_core::export_c_abi!();
