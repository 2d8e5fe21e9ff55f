//! Standard output for every verb. A reader that goes away (`memscope-stat
//! gc --dry-run | head -1`, a closed `watch` pipe) ends the program quietly
//! with status 0, as `ls` or `cat` do, instead of the panic `println!`
//! makes of EPIPE (Rust ignores SIGPIPE, so the write fails instead).

use std::fmt;
use std::io::{self, Write as _};

/// Writes `args` to stdout and flushes. On EPIPE: exit 0. On any other
/// write error: one line on stderr, exit 1.
pub fn emit(args: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        gone(&e);
    }
}

fn gone(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("memscope-stat: writing to standard output: {e}");
    std::process::exit(1);
}

/// `println!` for the CLI: see the module note.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the CLI: see the module note.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::emit(format_args!($($arg)*))
    };
}
