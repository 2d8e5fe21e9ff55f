//! `memscope-stat`: the sidecar CLI. It never links the shim: it finds
//! `libmemscope.so` on disk to preload it, and reads stats segments as
//! files.

mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "memscope-stat",
    version,
    about = "Run programs under memscope and read their allocation stats"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CMD with libmemscope.so preloaded; exits with CMD's status.
    Run {
        /// The library to preload (default: $MEMSCOPE_LIB, else found next
        /// to this program or in ../lib).
        #[arg(long, value_name = "PATH")]
        lib: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { lib, cmd } => run::run(lib, &cmd),
    }
}
