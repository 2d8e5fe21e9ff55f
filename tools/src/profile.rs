//! `memscope-stat profile PID`: asks a live process for a jemalloc heap
//! profile through its stats segment (no signal), moves the dump where
//! asked, and renders it with `jeprof` when asked and installed.
//!
//! The request is the one store a reader makes into a segment: the next
//! number into `Header::profile_request`, through a shared mapping of the
//! header's first page (an aligned atomic store, which the process reads
//! with an atomic load; `pwrite` gives no such guarantee).

use std::mem::offset_of;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memscope_abi::{self as abi, Header};

use crate::outln;
use crate::segment::{self, ReadError};

pub struct Request {
    pub pid: u32,
    pub dir: PathBuf,
    pub out: Option<PathBuf>,
    pub timeout: Duration,
    pub text: bool,
}

pub fn profile(r: &Request) -> ExitCode {
    match run(r) {
        Ok(code) => code,
        Err(e) => crate::commands::fail(&e),
    }
}

fn run(r: &Request) -> Result<ExitCode, ReadError> {
    let seg = segment::find(&r.dir, r.pid)?;
    if !seg.is_live() {
        return Err(ReadError::NotFound(format!(
            "{}: process {} has exited",
            seg.path.display(),
            r.pid
        )));
    }
    if segment::abi_minor_of(&seg)? < 2 {
        return Err(ReadError::Version(format!(
            "{}: written by a memscope without heap-profile requests (ABI 1.{}; 1.2 needed)",
            seg.path.display(),
            segment::abi_minor_of(&seg)?
        )));
    }
    let done = seg.u64_at(offset_of!(Header, profile_done))?;
    let asked = seg.u64_at(offset_of!(Header, profile_request))?;
    let req = done.max(asked) + 1;
    store_request(&seg.path, req)?;
    let start = Instant::now();
    loop {
        if seg.u64_at(offset_of!(Header, profile_done))? >= req {
            break;
        }
        if start.elapsed() >= r.timeout {
            eprintln!(
                "memscope-stat profile: process {} did not answer within {:.1}s. Requests are served by its \
                 maintenance thread (running once it has entered a NORECLAIM or NOFAIL scope) or by a thread \
                 allocating outside scopes; an idle process answers when it allocates again.",
                r.pid,
                r.timeout.as_secs_f64()
            );
            return Ok(ExitCode::from(9));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&seg.u64_at(offset_of!(Header, profile_status))?.to_ne_bytes()[..4]);
    let status = u32::from_ne_bytes(b);
    if status == abi::PROFILE_OFF {
        eprintln!(
            "memscope-stat profile: heap profiling is off in process {}: start it with MALLOC_CONF=prof:true \
             (add prof_active:false to start paused and switch on with mallctl \"prof.active\")",
            r.pid
        );
        return Ok(ExitCode::FAILURE);
    }
    if status != 0 {
        eprintln!(
            "memscope-stat profile: process {} could not write its profile: {}",
            r.pid,
            std::io::Error::from_raw_os_error(status as i32)
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut dumped = seg.path.clone().into_os_string();
    dumped.push(format!(".{req}.heap"));
    let dumped = PathBuf::from(dumped);
    let out = r
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("memscope.{}.{req}.heap", r.pid)));
    move_file(&dumped, &out)
        .map_err(|e| ReadError::Access(format!("{} -> {}: {e}", dumped.display(), out.display())))?;
    outln!("heap profile of process {} written to {}", r.pid, out.display());
    if r.text {
        render(r.pid, &out);
    }
    Ok(ExitCode::SUCCESS)
}

/// Stores `req` into the segment's `profile_request` with an atomic store
/// through a shared mapping of the header.
fn store_request(path: &Path, req: u64) -> Result<(), ReadError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            ReadError::Access(format!(
                "{}: {e} (a request needs write access: run as the process's user)",
                path.display()
            ))
        })?;
    let len = file
        .metadata()
        .map_err(|e| ReadError::Access(e.to_string()))?
        .len();
    if len < abi::HEADER_SIZE as u64 {
        return Err(ReadError::Corrupt(format!(
            "{}: shorter than its header",
            path.display()
        )));
    }
    // SAFETY: a shared mapping of the header, which the file holds (checked
    // above; the writer never truncates it); unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            abi::HEADER_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(ReadError::Access(format!(
                "{}: mmap: {}",
                path.display(),
                std::io::Error::last_os_error()
            )));
        }
        let word = &*(p.cast::<u8>().add(offset_of!(Header, profile_request)) as *const AtomicU64);
        word.fetch_max(req, Ordering::Release);
        libc::munmap(p, abi::HEADER_SIZE);
    }
    Ok(())
}

fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if std::fs::rename(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)?;
    std::fs::remove_file(from)
}

/// `jeprof --text` of the process's executable and the dump, if jeprof is
/// installed (Debian: libjemalloc-dev).
fn render(pid: u32, dump: &Path) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap_or_else(|_| PathBuf::from(format!("/proc/{pid}/exe")));
    match Command::new("jeprof").arg("--text").arg(&exe).arg(dump).output() {
        Ok(o) if o.status.success() => print!("{}", String::from_utf8_lossy(&o.stdout)),
        Ok(o) => eprintln!(
            "memscope-stat profile: jeprof failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("memscope-stat profile: jeprof not installed (Debian: libjemalloc-dev); open the dump with jeprof or pprof")
        }
        Err(e) => eprintln!("memscope-stat profile: jeprof: {e}"),
    }
}
