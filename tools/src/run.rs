//! `memscope-stat run -- CMD`: run a command with the preload set.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use crate::segment::{self, Segment};

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

/// The locks library beside `lib` (`make` builds both in target/release,
/// `make install` installs both in LIBDIR).
pub fn locks_library(lib: &Path) -> Result<PathBuf, String> {
    let locks = lib.with_file_name("libmemscope_locks.so");
    if locks.is_file() {
        Ok(locks)
    } else {
        Err(format!(
            "--locks: no libmemscope_locks.so beside {} (make builds it, make install installs it there)",
            lib.display()
        ))
    }
}

pub fn run(lib: Option<PathBuf>, locks: Option<&str>, report: Option<&Path>, cmd: &[String]) -> ExitCode {
    let lib = match find_library(lib) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("memscope-stat run: {e}");
            return ExitCode::from(2);
        }
    };
    let mut child = Command::new(&cmd[0]);
    match locks {
        None => {
            child.env("LD_PRELOAD", preload_value(&lib));
        }
        Some(mode) => {
            let locks_lib = match locks_library(&lib) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("memscope-stat run: {e}");
                    return ExitCode::from(2);
                }
            };
            // The locks library after memscope's, as its manual says.
            let mut both = OsString::from(&lib);
            both.push(":");
            both.push(&locks_lib);
            child.env("LD_PRELOAD", preload_value(Path::new(&both)));
            child.env("MEMSCOPE_LOCK_SCOPE", mode);
        }
    }
    child.args(&cmd[1..]);
    let status = match child.spawn() {
        Ok(c) => match report {
            None => wait(c),
            Some(file) => watch_and_report(c, file),
        },
        Err(e) => Err(e),
    };
    match status {
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

/// Adds the names of `pid`'s threads as they are now (`/proc`): they are
/// gone once it has exited.
fn note_thread_names(pid: u32, names: &mut HashMap<u32, String>) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(n) = std::fs::read_to_string(e.path().join("comm")) {
            names.insert(tid, n.trim_end().to_string());
        }
    }
}

fn wait(mut c: Child) -> std::io::Result<ExitStatus> {
    c.wait()
}

/// Waits for the child while holding its stats segment open (the file is
/// removed at the child's exit, or stays behind it if it dies; an open
/// descriptor reads it either way) and keeping a copy of its
/// `/proc/PID/maps` (refreshed every second, for the call sites' names
/// once it has gone); then writes `file`: `show --json` and `locks --json`
/// of the child's last numbers. A child without a segment gets a file
/// that says so.
fn watch_and_report(mut c: Child, file: &Path) -> std::io::Result<ExitStatus> {
    let pid = c.id();
    let dir = segment::stats_dir(None);
    let mut seg: Option<Segment> = None;
    let mut maps = String::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut maps_at: Option<Instant> = None;
    let status = loop {
        if let Some(st) = c.try_wait()? {
            break st;
        }
        if seg.is_none() {
            seg = segment::find(&dir, pid).ok().filter(|s| s.is_live());
        }
        if seg.is_some() && maps_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            if let Ok(m) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
                maps = m;
            }
            note_thread_names(pid, &mut names);
            maps_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let value = match &seg {
        None => serde_json::json!({
            "pid": pid,
            "error": format!("no stats segment appeared for pid {pid} in {}", dir.display()),
        }),
        Some(s) => match s.snapshot() {
            Ok(mut snap) => {
                // The threads' names as they were while they ran.
                for t in &mut snap.threads {
                    if let Some(n) = names.get(&t.tid) {
                        t.name = n.clone();
                    }
                }
                let sites = crate::sites::collect_with_maps(s, &maps).unwrap_or_default();
                serde_json::json!({
                    "pid": pid,
                    "show": crate::report::json(&snap),
                    "locks": crate::locks::json(&snap, &sites, 20),
                    "sites": sites,
                })
            }
            Err(e) => serde_json::json!({ "pid": pid, "error": e.to_string() }),
        },
    };
    let text = serde_json::to_string_pretty(&value).unwrap_or_default() + "\n";
    if let Err(e) = std::fs::write(file, text) {
        eprintln!("memscope-stat run: cannot write {}: {e}", file.display());
    }
    Ok(status)
}
