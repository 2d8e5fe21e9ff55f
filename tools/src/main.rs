//! `memscope-stat`: the sidecar CLI. It never links the shim: it finds
//! `libmemscope.so` on disk to preload it, and reads stats segments as
//! files.

use memscope_stat::{commands, manual, outln, profile, run, segment, serve};

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

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
        /// to this program, in ../lib, in the library directory it was
        /// built for, on LD_LIBRARY_PATH or in the loader's cache).
        #[arg(long, value_name = "PATH")]
        lib: Option<PathBuf>,
        /// Also preload libmemscope_locks.so (found beside the library):
        /// while a thread holds a pthread lock it is in MODE's scope
        /// (MEMSCOPE_LOCK_SCOPE): report, noreclaim or noreclaim,nofail.
        #[arg(long, value_name = "MODE", value_parser = ["report", "noreclaim", "noreclaim,nofail"])]
        locks: Option<String>,
        /// When CMD exits (or dies), write its last numbers to FILE as JSON:
        /// `show --json`, `locks --json` and its call sites, symbolized.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<String>,
    },
    /// List processes with a live stats segment.
    List {
        #[command(flatten)]
        dir: DirArg,
        /// Include segments of processes that have exited.
        #[arg(long)]
        all: bool,
    },
    /// Print a process's stats: latency per operation and scope, threads, events.
    Show {
        /// The process id.
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// JSON (schema in docs/STATS.md).
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus text exposition format.
        #[arg(long)]
        prometheus: bool,
        /// With --prometheus: label series with `pid` as well as `command`.
        #[arg(long, requires = "prometheus")]
        pid_label: bool,
        /// Also write an SVG to FILE: call latency as a CCDF per operation
        /// and scope, and how long NORECLAIM scopes were held, per thread.
        #[arg(long, value_name = "FILE")]
        plot: Option<PathBuf>,
        /// List every event counter, zeros included.
        #[arg(long)]
        all_events: bool,
    },
    /// Where a process's allocations were refused, hit the NOFAIL policy or
    /// waited (exact), where it allocates inside NORECLAIM (sampled), and
    /// where its timed NORECLAIM scopes were pushed: call sites, symbolized.
    Sites {
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// JSON (schema in docs/STATS.md).
        #[arg(long)]
        json: bool,
        /// Sites shown per kind.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// What a process's threads allocated while they held program locks
    /// (lock sections: libmemscope_locks.so), per thread and in total, with
    /// sizes, latencies, refusals and call sites.
    Locks {
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// JSON (schema in docs/STATS.md).
        #[arg(long)]
        json: bool,
        /// Sites shown per list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Redraw a process's call rates and interval percentiles until it exits.
    Watch {
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// Seconds between screens.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
        /// Stop after this many screens.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Snapshot a process's segment repeatedly, checking every snapshot's
    /// invariants (exit 1 on a violation).
    Check {
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// How long to keep reading.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Remove the segments of processes that have exited (yours only).
    Gc {
        #[command(flatten)]
        dir: DirArg,
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Serve every live segment you can read at http://LISTEN/metrics.
    Serve {
        #[command(flatten)]
        dir: DirArg,
        /// Address to listen on (loopback unless --allow-remote).
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
        /// Allow a non-loopback listen address.
        #[arg(long)]
        allow_remote: bool,
        /// Label series with `pid` as well as `command` (by default the
        /// processes of one command are added together: a series set per
        /// program, not per process and restart).
        #[arg(long)]
        pid_label: bool,
        /// Remove the segments of exited processes (as `gc`) this often, in
        /// seconds; 0: never.
        #[arg(long, default_value_t = 60.0)]
        gc_every: f64,
    },
    /// Ask a live process for a jemalloc heap profile (it must run with
    /// MALLOC_CONF=prof:true); write it to FILE and, with --text, render it
    /// with jeprof.
    Profile {
        pid: u32,
        #[command(flatten)]
        dir: DirArg,
        /// Where to write the profile (default: memscope.PID.N.heap here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Seconds to wait for the process to answer.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Print `jeprof --text` of the profile.
        #[arg(long)]
        text: bool,
    },
    /// Print the completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (memscope-stat.1 and one per command) into DIR.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(clap::Args)]
struct DirArg {
    /// Stats directory (default: $MEMSCOPE_STATS_DIR, else /dev/shm).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

impl DirArg {
    fn path(&self) -> PathBuf {
        segment::stats_dir(self.dir.as_deref())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            lib,
            locks,
            report,
            cmd,
        } => run::run(lib, locks.as_deref(), report.as_deref(), &cmd),
        Command::Locks { pid, dir, json, top } => done(commands::locks(&dir.path(), pid, json, top)),
        Command::List { dir, all } => done(commands::list(&dir.path(), all)),
        Command::Sites { pid, dir, json, top } => done(commands::sites(&dir.path(), pid, json, top)),
        Command::Show {
            pid,
            dir,
            json,
            prometheus,
            pid_label,
            plot,
            all_events,
        } => {
            if let Some(file) = plot {
                if let Err(code) = commands::plot(&dir.path(), pid, &file) {
                    return code;
                }
            }
            let format = if json {
                commands::Format::Json
            } else if prometheus {
                commands::Format::Prometheus(labels(pid_label))
            } else {
                commands::Format::Text { all_events }
            };
            done(commands::show(&dir.path(), pid, format))
        }
        Command::Watch {
            pid,
            dir,
            interval,
            count,
        } => {
            let interval = if interval.is_finite() {
                interval.clamp(0.05, 3600.0)
            } else {
                1.0
            };
            let interval = Duration::from_secs_f64(interval);
            done(commands::watch(&dir.path(), pid, interval, count))
        }
        Command::Check { pid, dir, seconds } => match commands::check(&dir.path(), pid, seconds) {
            Ok((n, v)) if v.is_empty() => {
                outln!("{n} snapshots, no violations");
                ExitCode::SUCCESS
            }
            Ok((n, v)) => {
                for line in v.iter().take(20) {
                    outln!("violation: {line}");
                }
                outln!("{n} snapshots, {} violations", v.len());
                ExitCode::FAILURE
            }
            Err(e) => commands::fail(&e),
        },
        Command::Gc { dir, dry_run } => done(commands::gc(&dir.path(), dry_run).map(|_| ())),
        Command::Serve {
            dir,
            listen,
            allow_remote,
            pid_label,
            gc_every,
        } => serve::serve(
            &dir.path(),
            &listen,
            allow_remote,
            labels(pid_label),
            (gc_every.is_finite() && gc_every > 0.0)
                .then(|| Duration::from_secs_f64(gc_every.clamp(1.0, 86400.0))),
        ),
        Command::Profile {
            pid,
            dir,
            out,
            timeout,
            text,
        } => profile::profile(&profile::Request {
            pid,
            dir: dir.path(),
            out,
            timeout: Duration::from_secs_f64(if timeout.is_finite() {
                timeout.clamp(0.0, 3600.0)
            } else {
                10.0
            }),
            text,
        }),
        Command::Completions { shell } => {
            manual::print_completions(&mut Cli::command(), shell);
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match manual::write_pages(&Cli::command(), &dir) {
            Ok(pages) => {
                outln!("{}", pages.join(" "));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("memscope-stat man: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
    }
}

fn labels(pid_label: bool) -> memscope_stat::report::Labels {
    if pid_label {
        memscope_stat::report::Labels::CommandAndPid
    } else {
        memscope_stat::report::Labels::Command
    }
}

fn done(r: Result<(), segment::ReadError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => commands::fail(&e),
    }
}
