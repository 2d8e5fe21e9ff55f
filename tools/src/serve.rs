//! `serve`: an HTTP `/metrics` endpoint with every live segment the user
//! can read, so an existing Prometheus scrapes a fleet of daemons.

use std::path::Path;
use std::process::ExitCode;

use crate::commands;
use crate::report;

pub fn serve(dir: &Path, listen: &str, allow_remote: bool) -> ExitCode {
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
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match (req.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let body = report::prometheus(&commands::all_live(dir));
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
    ExitCode::SUCCESS
}

fn header(content_type: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .unwrap_or_else(|_| tiny_http::Header::from_bytes(&b"X"[..], &b"y"[..]).expect("static header"))
}
