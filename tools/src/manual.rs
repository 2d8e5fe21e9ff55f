//! `memscope-stat man` and `memscope-stat completions`: the manual pages
//! and shell completions, generated from the command-line definition (and,
//! for the ENVIRONMENT section, from the library's option table), so they
//! cannot drift from the program. `make install` writes them.

use std::io::Write;
use std::path::Path;

use clap::Command;

/// Writes `memscope-stat.1` and one `memscope-stat-VERB.1` per subcommand
/// into `dir`.
pub fn write_pages(cmd: &Command, dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    environment_section(&mut page)?;
    see_also_section(&mut page, cmd)?;
    let name = format!("{}.1", cmd.get_name());
    std::fs::write(dir.join(&name), page)?;
    written.push(name);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let full = format!("{}-{}", cmd.get_name(), sub.get_name());
        let mut page = Vec::new();
        let sub = sub
            .clone()
            .name(full.clone())
            .bin_name(format!("{} {}", cmd.get_name(), sub.get_name()));
        clap_mangen::Man::new(sub).render(&mut page)?;
        environment_section(&mut page)?;
        let name = format!("{full}.1");
        std::fs::write(dir.join(&name), page)?;
        written.push(name);
    }
    Ok(written)
}

/// Escapes text for roff: backslashes, and a leading `.` or `'`.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

fn environment_section(out: &mut Vec<u8>) -> std::io::Result<()> {
    writeln!(out, ".SH ENVIRONMENT")?;
    let own = [
        ("MEMSCOPE_LIB", "the library `run` preloads (else next to this program, ../lib, the compiled-in library directory, LD_LIBRARY_PATH, the loader's cache)"),
        ("MEMSCOPE_STATS_DIR", "where stats segments are looked for (default /dev/shm); the library writes them there too"),
    ];
    for (name, text) in own {
        writeln!(out, ".TP\n.B {}\n{}", roff(name), roff(text))?;
    }
    writeln!(
        out,
        ".PP\nThe library (libmemscope.so, and programs linking the Rust crate memscope) reads these, once at start-up; a bad value gets one line on stderr and the default:"
    )?;
    for (name, default, text) in memscope_abi::names::OPTIONS {
        writeln!(
            out,
            ".TP\n.B {}\n(default {}) {}",
            roff(name),
            roff(default),
            roff(text)
        )?;
    }
    writeln!(
        out,
        ".TP\n.B MALLOC_CONF\njemalloc's options, passed on to memscope's jemalloc (also as _RJEM_MALLOC_CONF)."
    )
}

fn see_also_section(out: &mut Vec<u8>, cmd: &Command) -> std::io::Result<()> {
    let pages: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| {
            format!(
                ".BR {}\\-{} (1)",
                cmd.get_name().replace('-', "\\-"),
                s.get_name()
            )
        })
        .collect();
    writeln!(out, ".SH SEE ALSO\n{}", pages.join(",\n"))
}

/// Prints the completion script for `shell` to stdout (a closed pipe ends
/// the output quietly, as everywhere in the CLI).
pub fn print_completions(cmd: &mut Command, shell: clap_complete::Shell) {
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, cmd, name, &mut script);
    crate::out!("{}", String::from_utf8_lossy(&script));
}
