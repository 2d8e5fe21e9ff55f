//! The sidecar's library side: reading stats segments (`segment`),
//! formatting them (`report`, `plot`), the subcommands (`commands`, `serve`,
//! `run`). `main.rs` is the argument parsing. Split out so that tests
//! (the reader's fuzz tests above all) reach the reader directly.

pub mod commands;
pub mod locks;
pub mod manual;
pub mod output;
pub mod plot;
pub mod profile;
pub mod report;
pub mod run;
pub mod segment;
pub mod serve;
pub mod sites;
