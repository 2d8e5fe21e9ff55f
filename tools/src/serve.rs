//! `serve`: an HTTP `/metrics` endpoint with every live segment the user
//! can read, so an existing Prometheus scrapes a fleet of daemons.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::commands;
use crate::report;
use crate::segment::Snapshot;

/// Serves until killed. With `gc_every`, also removes the segments of
/// exited processes that often (a process killed by SIGKILL leaves its
/// segment; a long-running exporter is where they would pile up).
pub fn serve(
    dir: &Path,
    listen: &str,
    allow_remote: bool,
    labels: report::Labels,
    gc_every: Option<Duration>,
) -> ExitCode {
    let loopback = listen
        .rsplit_once(':')
        .map(|(host, _)| host.trim_matches(['[', ']']))
        .and_then(|h| h.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        eprintln!(
            "memscope-stat: refusing to listen on {listen}: not a loopback address (stats name your processes; \
             pass --allow-remote to expose them)"
        );
        return ExitCode::from(2);
    }
    let server = match tiny_http::Server::http(listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("memscope-stat: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "memscope-stat: serving http://{listen}/metrics for segments in {}",
        dir.display()
    );
    let mut last_gc = Instant::now();
    let mut departed = Departed::default();
    loop {
        if let Some(every) = gc_every {
            if last_gc.elapsed() >= every {
                last_gc = Instant::now();
                if let Err(e) = commands::gc(dir, false) {
                    eprintln!("memscope-stat serve: gc: {e}");
                }
            }
        }
        let req = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("memscope-stat serve: {e}");
                return ExitCode::from(1);
            }
        };
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match (req.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let mut snaps = commands::all_live(dir);
                if labels == report::Labels::Command {
                    snaps.extend(departed.update(&snaps));
                }
                let body = report::prometheus(&snaps, labels);
                tiny_http::Response::from_string(body)
                    .with_header(header("text/plain; version=0.0.4; charset=utf-8"))
            }
            (tiny_http::Method::Get, "/") => {
                tiny_http::Response::from_string("memscope-stat: metrics at /metrics\n".to_string())
                    .with_header(header("text/plain; charset=utf-8"))
            }
            _ => tiny_http::Response::from_string("not found\n".to_string()).with_status_code(404),
        };
        let _ = req.respond(resp);
    }
}

/// Per-command sums must not go down when a process of the command exits
/// (Prometheus would read a counter reset and count everything again): the
/// last snapshot of every process seen by an earlier scrape and gone from
/// this one is kept, per command, and added to the command's series. What a
/// process did between its last scrape and its exit is not seen.
#[derive(Default)]
struct Departed {
    /// The previous scrape's processes, by (pid, start time).
    seen: HashMap<(u32, u64), Snapshot>,
    /// Per command: the sum of every process that has gone.
    gone: BTreeMap<String, Snapshot>,
}

impl Departed {
    /// Takes this scrape's live snapshots; returns the departed sums to add.
    fn update(&mut self, live: &[Snapshot]) -> Vec<Snapshot> {
        let mut now: HashMap<(u32, u64), Snapshot> = live
            .iter()
            .map(|s| ((s.pid, s.start_unix_ns), s.clone()))
            .collect();
        std::mem::swap(&mut self.seen, &mut now);
        for (key, s) in now {
            if self.seen.contains_key(&key) {
                continue;
            }
            let command = s.command_name().to_string();
            let gone = s.departed();
            let sum = match self.gone.remove(&command) {
                Some(prev) => Snapshot::merge(vec![prev, gone]),
                None => Some(gone),
            };
            if let Some(sum) = sum {
                self.gone.insert(command, sum);
            }
        }
        self.gone.values().cloned().collect()
    }
}

fn header(content_type: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(&b"X"[..], &b"y"[..]).expect("static header"))
}
