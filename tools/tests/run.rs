//! `memscope-stat run` and `--version`, as a user runs them.

use std::path::PathBuf;
use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memscope-stat"))
}

/// The library `make` builds (make test builds it before the tests run).
fn library() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/libmemscope.so");
    assert!(p.is_file(), "{} missing: run `make` first", p.display());
    p.canonicalize().unwrap()
}

#[test]
fn version_matches_cargo() {
    let out = cli().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim(),
        format!("memscope-stat {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_preloads_the_library_and_keeps_arguments() {
    let lib = library();
    let out = cli()
        .args(["run", "--lib"])
        .arg(&lib)
        .args(["--", "sh", "-c", "echo \"$LD_PRELOAD|$1\"", "sh", "--an-argument"])
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("{}|--an-argument", lib.display())
    );
}

#[test]
fn run_really_swaps_the_allocator() {
    // Under the preload, malloc resolves into libmemscope.so.
    let out = cli()
        .args(["run", "--lib"])
        .arg(library())
        .args(["--", "grep", "-c", "libmemscope.so", "/proc/self/maps"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    let n: u32 = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    assert!(n > 0);
}

#[test]
fn run_passes_on_the_exit_status_and_the_signal() {
    let status = cli()
        .args(["run", "--lib"])
        .arg(library())
        .args(["--", "sh", "-c", "exit 7"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
    use std::os::unix::process::ExitStatusExt;
    let status = cli()
        .args(["run", "--lib"])
        .arg(library())
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGTERM));
}

#[test]
fn run_reports_a_missing_library_and_a_missing_command() {
    let out = cli()
        .args(["run", "--lib", "/nonexistent/libmemscope.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/libmemscope.so: no such library file")
    );
    let out = cli()
        .args(["run", "--lib"])
        .arg(library())
        .args(["--", "/nonexistent/cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot run /nonexistent/cmd"));
}
