//! Memory pressure, as the kernel sees it: the userspace kswapd's ears.
//!
//! A small thread ("memscope-psi", started by the maintenance thread when
//! `MEMSCOPE_PRESSURE` is on) blocks in `poll` on two files and nothing
//! else, so it costs no CPU while nothing happens:
//! - a PSI trigger (`some STALL WINDOW`) written into the cgroup v2
//!   `memory.pressure`, else the machine's `/proc/pressure/memory`: the
//!   kernel wakes the poll when tasks stalled on memory that long within
//!   the window;
//! - the cgroup's `memory.events` (when it has one): a change wakes the
//!   poll, and a rise of its `high` count means the cgroup went over
//!   `memory.high` (the kernel is throttling and reclaiming it).
//!
//! Either one counts its event and sets `PENDING`; the maintenance thread
//! then runs the reclaimers (nothing filtered: it is in no scope) and
//! purges (`maintenance::respond_to_pressure`), before the kernel's own
//! reclaim or the OOM killer has to.

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering::*};

use crate::base::config::CONFIG;
use crate::base::counters::{count, Event};
use crate::base::{log, mailbox};
use crate::os;
use crate::os::cgroup;

/// Pressure seen and not yet answered by the maintenance thread.
static PENDING: AtomicBool = AtomicBool::new(false);
/// The process whose watcher runs: a forked child (whose maintenance thread
/// starts again) finds another pid here and starts its own.
static WATCHER_PID: AtomicU32 = AtomicU32::new(0);

/// Takes the pending pressure, if any (the maintenance thread).
pub fn take() -> bool {
    PENDING.swap(false, Acquire)
}

/// Starts the watcher unless it runs in this process or pressure is off.
/// Called by the maintenance thread.
pub fn ensure_watching() {
    let (stall, window) = (
        CONFIG.pressure_stall_us.load(Relaxed),
        CONFIG.pressure_window_us.load(Relaxed),
    );
    let pid = os::getpid();
    if window == 0 || WATCHER_PID.swap(pid, Relaxed) == pid {
        return;
    }
    let Some(psi) = cgroup::pressure_file() else {
        log::warn(format_args!(
            "memory pressure: no PSI here (no memory.pressure, no /proc/pressure/memory); MEMSCOPE_PRESSURE has no effect"
        ));
        return;
    };
    let trigger = match arm(psi.as_cstr(), stall, window) {
        Ok(fd) => fd,
        // Without CAP_SYS_RESOURCE the kernel takes only windows that are
        // whole multiples of 2 s: the nearest such trigger, said once.
        Err(libc::EINVAL) if window % 2_000_000 != 0 => {
            let wider = window.div_ceil(2_000_000) * 2_000_000;
            let stall = stall * wider / window;
            match arm(psi.as_cstr(), stall, wider) {
                Ok(fd) => {
                    log::warn(format_args!(
                        "memory pressure: the kernel takes a {} ms window only with CAP_SYS_RESOURCE; watching {} ms stalls in {} ms instead",
                        window / 1000,
                        stall / 1000,
                        wider / 1000
                    ));
                    fd
                }
                Err(e) => return unarmed(&psi, e),
            }
        }
        Err(e) => return unarmed(&psi, e),
    };

    let events = cgroup::events_file().and_then(|p| os::open_read(p.as_cstr()).ok());
    WATCH_FDS[0].store(trigger, Relaxed);
    WATCH_FDS[1].store(events.unwrap_or(-1), Relaxed);
    if let Err(e) = os::spawn_small_thread(watcher_main, 64 << 10) {
        os::close(trigger);
        if let Some(fd) = events {
            os::close(fd);
        }
        log::warn(format_args!(
            "memory pressure: could not start the watcher thread (errno {e}); MEMSCOPE_PRESSURE has no effect"
        ));
    }
}

/// The watcher's descriptors (trigger, memory.events or -1), handed over
/// before it starts (one watcher per process).
static WATCH_FDS: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

/// The watcher thread's entry. A raw thread, not `std::thread`: it makes
/// no allocator call at all (std's start-up allocates), so it never sets
/// up jemalloc's per-thread state, which jemalloc 5.3 gets wrong when the
/// address space is exhausted (the `nofail rlimit-first` case crashed in
/// exactly that set-up), and it costs only its small stack.
extern "C" fn watcher_main(_: *mut core::ffi::c_void) -> *mut core::ffi::c_void {
    os::name_thread(c"memscope-psi");
    let trigger = WATCH_FDS[0].load(Relaxed);
    let events = WATCH_FDS[1].load(Relaxed);
    watch(trigger, (events >= 0).then_some(events));
    core::ptr::null_mut()
}

fn unarmed(psi: &cgroup::Path, errno: i32) {
    log::warn(format_args!(
        "memory pressure: cannot arm a PSI trigger on {} (errno {errno}); MEMSCOPE_PRESSURE has no effect",
        log::Bytes(psi.bytes())
    ));
}

/// Opens `path` and writes the trigger "some STALL WINDOW" (microseconds).
fn arm(path: &core::ffi::CStr, stall_us: u64, window_us: u64) -> Result<os::Fd, i32> {
    let fd = os::open_trigger(path)?;
    match os::write_once(fd, trigger_text(stall_us, window_us).as_bytes()) {
        Ok(()) => Ok(fd),
        Err(e) => {
            os::close(fd);
            Err(e)
        }
    }
}

/// "some STALL WINDOW" with its NUL (the kernel parses the string whole),
/// formatted on the stack.
fn trigger_text(stall_us: u64, window_us: u64) -> log::StackLine {
    let mut line = log::StackLine::new();
    let _ = write!(line, "some {stall_us} {window_us}\0");
    line
}

/// What woke the watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The PSI trigger fired.
    Trigger,
    /// `memory.events` changed.
    Events,
}

/// The watcher thread: waits on the trigger (and `memory.events`) forever,
/// turning each wake-up into a count and a request to the maintenance
/// thread. Ends if the trigger's file goes away (its cgroup removed).
fn watch(trigger: os::Fd, events: Option<os::Fd>) {
    let mut last_high = events.map_or(0, |fd| read_high(fd).unwrap_or(0));
    wait_loop(trigger, libc::POLLPRI, events, |source| {
        let pressed = match source {
            Source::Trigger => {
                count(Event::PressureTrigger);
                true
            }
            Source::Events => {
                // Reading it re-arms the notification as well.
                let high = events.and_then(read_high).unwrap_or(last_high);
                let rose = high > last_high;
                last_high = high;
                if rose {
                    count(Event::MemoryHigh);
                }
                rose
            }
        };
        if pressed {
            PENDING.store(true, Release);
            mailbox::wake();
        }
    });
    os::close(trigger);
    if let Some(fd) = events {
        os::close(fd);
    }
}

/// The `high` count in `memory.events`.
fn read_high(fd: os::Fd) -> Option<u64> {
    let mut buf = [0u8; 512];
    let n = os::read_at_start(fd, &mut buf);
    cgroup::events_high(&buf[..n])
}

/// Polls `primary` (for `primary_events`) and `events` (POLLPRI: a kernfs
/// file that changed) until `primary` reports an error or hang-up, calling
/// `on` for each source that is ready. Separate from the files so that a
/// test can drive it with a pipe (POLLIN) as a simulated pressure source.
pub fn wait_loop(primary: os::Fd, primary_events: i16, events: Option<os::Fd>, mut on: impl FnMut(Source)) {
    let mut fds = [
        libc::pollfd {
            fd: primary,
            events: primary_events,
            revents: 0,
        },
        libc::pollfd {
            fd: events.unwrap_or(-1), // a negative fd is ignored by poll
            events: libc::POLLPRI,
            revents: 0,
        },
    ];
    loop {
        for f in fds.iter_mut() {
            f.revents = 0;
        }
        if os::poll_forever(&mut fds).is_err() {
            return;
        }
        let primary_ready = fds[0].revents;
        if primary_ready & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
            && primary_ready & primary_events == 0
        {
            return;
        }
        if primary_ready & primary_events != 0 {
            on(Source::Trigger);
        }
        if fds[1].revents & (libc::POLLPRI | libc::POLLERR) != 0 {
            on(Source::Events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trigger_is_what_the_kernel_parses() {
        let line = trigger_text(200_000, 2_000_000);
        let (text, nul) = line.as_bytes().split_at(line.as_bytes().len() - 1);
        assert_eq!(text, b"some 200000 2000000");
        assert_eq!(nul, [0]);
    }

    /// A simulated pressure source: a pipe stands for the PSI trigger;
    /// each byte written is one "stall", and hang-up ends the watch.
    #[test]
    fn a_simulated_pressure_source_wakes_the_watcher_once_per_event() {
        let mut p = [0i32; 2];
        // SAFETY: `p` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK) }, 0);
        let (rd, wr) = (p[0], p[1]);
        let watcher = std::thread::spawn(move || {
            let mut seen = 0;
            wait_loop(rd, libc::POLLIN, None, |source| {
                assert_eq!(source, Source::Trigger);
                let mut b = [0u8; 16];
                // SAFETY: `b` is valid for writes of its length.
                seen += unsafe { libc::read(rd, b.as_mut_ptr().cast(), b.len()) }.max(0) as usize;
            });
            seen
        });
        for _ in 0..3 {
            assert!(os::write_once(wr, b"x").is_ok());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        os::close(wr); // hang-up: the loop returns
        assert_eq!(watcher.join().unwrap(), 3);
        os::close(rd);
    }

    #[test]
    fn a_changed_events_file_is_reported_as_events() {
        // Another pipe stands for memory.events; POLLPRI does not apply to
        // pipes, so the loop is checked to ignore its POLLIN and to end on
        // the primary's hang-up alone.
        let (mut a, mut b) = ([0i32; 2], [0i32; 2]);
        // SAFETY: room for the descriptors.
        unsafe {
            assert_eq!(libc::pipe2(a.as_mut_ptr(), libc::O_NONBLOCK), 0);
            assert_eq!(libc::pipe2(b.as_mut_ptr(), libc::O_NONBLOCK), 0);
        }
        assert!(os::write_once(b[1], b"high 1\n").is_ok());
        let watcher = std::thread::spawn(move || {
            let mut calls = 0;
            wait_loop(a[0], libc::POLLIN, Some(b[0]), |_| calls += 1);
            calls
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        os::close(a[1]);
        assert_eq!(watcher.join().unwrap(), 0);
        for fd in [a[0], b[0], b[1]] {
            os::close(fd);
        }
    }
}
