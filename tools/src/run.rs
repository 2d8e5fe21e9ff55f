//! `memscope-stat run -- CMD`: run a command with the preload set.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const LIB_NAME: &str = "libmemscope.so";

/// Where the library is: the flag, `$MEMSCOPE_LIB`, next to this program
/// (a cargo build), `../lib` (an install under a prefix), the library
/// directory this program was built for (`make install LIBDIR=...`), a
/// directory of `LD_LIBRARY_PATH`, or wherever the dynamic loader's cache
/// finds `libmemscope.so.0` (`ldconfig -p`: the distro library
/// directories, /usr/local/lib after `ldconfig`).
pub fn find_library(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = explicit.or_else(|| std::env::var_os("MEMSCOPE_LIB").map(PathBuf::from)) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{}: no such library file", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut candidates = vec![
        dir.join(LIB_NAME),
        dir.join("../lib").join(LIB_NAME),
        Path::new(env!("MEMSCOPE_LIBDIR")).join(LIB_NAME),
    ];
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        candidates.extend(
            std::env::split_paths(&paths)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(LIB_NAME)),
        );
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or_else(|_| p.clone()))
        .or_else(loader_knows)
        .ok_or_else(|| {
            format!(
                "{LIB_NAME} not found (looked in {} and the loader's cache, `ldconfig -p`); \
                 pass --lib or set MEMSCOPE_LIB",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The path the dynamic loader's cache gives for `libmemscope.so.0`.
fn loader_knows() -> Option<PathBuf> {
    let soname = format!("{LIB_NAME}.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    let out = Command::new("ldconfig").arg("-p").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter(|l| l.trim_start().starts_with(&format!("{soname} ")))
        .filter_map(|l| l.rsplit_once("=> ").map(|(_, p)| PathBuf::from(p.trim())))
        .find(|p| p.is_file())
}

/// `LD_PRELOAD` with the library first, keeping whatever was there.
fn preload_value(lib: &Path) -> OsString {
    let mut v = OsString::from(lib);
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
        v.push(":");
        v.push(old);
    }
    v
}

pub fn run(lib: Option<PathBuf>, cmd: &[String]) -> ExitCode {
    let lib = match find_library(lib) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("memscope-stat run: {e}");
            return ExitCode::from(2);
        }
    };
    let mut child = Command::new(&cmd[0]);
    child.args(&cmd[1..]).env("LD_PRELOAD", preload_value(&lib));
    match child.status() {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(code as u8),
            // Die the way the child died, so shells see the same signal.
            (None, Some(sig)) => {
                // SAFETY: restoring the default action and raising is how a
                // wrapper reports a child's death by signal.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
                ExitCode::from(128 + sig as u8)
            }
            (None, None) => ExitCode::FAILURE,
        },
        Err(e) => {
            eprintln!("memscope-stat run: cannot run {}: {e}", cmd[0]);
            ExitCode::from(127)
        }
    }
}
