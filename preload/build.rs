//! Gives libmemscope.so its SONAME, `libmemscope.so.<major>`, so that an
//! installed library is versioned as shared libraries are (`make install`
//! lays out `libmemscope.so.X.Y.Z`, `.so.X` and `.so`).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmemscope.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
