//! Allocation-free diagnostics: lines formatted into a stack buffer and
//! written with `write(2)`, rate-limited, silenced by `MEMSCOPE_LOG=off`.
//!
//! Rule: nothing here allocates (stdio may, and may re-enter malloc), and
//! callers on a NORECLAIM thread never reach `write` (they count instead;
//! the maintenance thread reports for them).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// At most this many lines per second; the rest are counted and the count
/// is printed with the next line that gets through.
const LINES_PER_SECOND: u64 = 10;
const LINE_MAX: usize = 512;

static WINDOW_START: AtomicU64 = AtomicU64::new(0);
static LINES_IN_WINDOW: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// A fixed-capacity line; text that does not fit is cut, marked with `...`.
pub struct StackLine {
    buf: [u8; LINE_MAX],
    len: usize,
    cut: bool,
}

impl StackLine {
    pub const fn new() -> Self {
        StackLine {
            buf: [0; LINE_MAX],
            len: 0,
            cut: false,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Ends the line with `...` if it was cut, then a newline.
    fn finish(&mut self) {
        let tail: &[u8] = if self.cut { b"...\n" } else { b"\n" };
        let at = self.len.min(LINE_MAX - tail.len());
        self.buf[at..at + tail.len()].copy_from_slice(tail);
        self.len = at + tail.len();
    }
}

impl Default for StackLine {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for StackLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - 4 - self.len.min(LINE_MAX - 4);
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

/// Displays raw bytes (an environment value, a name) without allocating;
/// anything but printable ASCII is shown as `\xNN`.
pub struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &c in self.0 {
            if (0x20..0x7f).contains(&c) {
                f.write_char(c as char)?;
            } else {
                write!(f, "\\x{c:02x}")?;
            }
        }
        Ok(())
    }
}

/// Writes all of `bytes` to stderr, retrying on EINTR and short writes.
pub fn write_stderr(bytes: &[u8]) {
    crate::os::write_stderr(bytes)
}

pub use crate::os::{errno, set_errno};

/// Seconds on the coarse monotonic clock (a vDSO read, no syscall).
pub fn coarse_seconds() -> u64 {
    crate::os::coarse_ns() / 1_000_000_000
}

/// Nanoseconds on the coarse monotonic clock (a vDSO read, no syscall).
pub fn coarse_nanos() -> u64 {
    crate::os::coarse_ns()
}

/// True if a line may be printed now; otherwise counts it as suppressed.
fn admit() -> bool {
    let now = coarse_seconds() + 1; // +1 so that 0 means "never started"
    let start = WINDOW_START.load(Relaxed);
    if now != start
        && WINDOW_START
            .compare_exchange(start, now, Relaxed, Relaxed)
            .is_ok()
    {
        LINES_IN_WINDOW.store(0, Relaxed);
    }
    if LINES_IN_WINDOW.fetch_add(1, Relaxed) < LINES_PER_SECOND {
        true
    } else {
        SUPPRESSED.fetch_add(1, Relaxed);
        false
    }
}

/// `MEMSCOPE_LOG`: diagnostics on (`warn`, the default) or off. Set once
/// by `config::load`; kept here so that this module needs nothing above it.
static ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(true);

pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Prints `memscope: <args>` on stderr unless logging is off or the rate
/// limit is reached. Must not be called on a NORECLAIM thread.
pub fn warn(args: fmt::Arguments<'_>) {
    if !enabled() || !admit() {
        return;
    }
    let mut line = StackLine::new();
    let _ = line.write_str("memscope: ");
    let _ = line.write_fmt(args);
    let suppressed = SUPPRESSED.swap(0, Relaxed);
    if suppressed > 0 {
        let _ = write!(line, " ({suppressed} earlier lines suppressed)");
    }
    line.finish();
    write_stderr(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_and_marked() {
        let mut l = StackLine::new();
        for _ in 0..100 {
            let _ = l.write_str("0123456789");
        }
        l.finish();
        assert_eq!(l.as_bytes().len(), LINE_MAX);
        assert!(l.as_bytes().ends_with(b"...\n"));
    }

    #[test]
    fn short_lines_end_with_a_newline() {
        let mut l = StackLine::new();
        let _ = write!(l, "x={} {}", 5, Bytes(b"a\x01"));
        l.finish();
        assert_eq!(l.as_bytes(), b"x=5 a\\x01\n");
    }
}
