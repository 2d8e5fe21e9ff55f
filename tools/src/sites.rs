//! `memscope-stat sites PID`: the call sites a process's tables name
//! (refusals, NOFAIL policy hits and waits, sampled NORECLAIM allocations,
//! timed NORECLAIM scopes), added up over its threads and symbolized.
//!
//! Symbols: the process's `/proc/PID/maps` gives the object and file
//! offset of every address; `addr2line` (with `object` and `gimli`) reads
//! the object's DWARF for function, file and line (inlined frames too), or
//! its symbol table without debug information; names are demangled (Rust
//! and C++). An address no object explains prints as `object+offset`. A
//! process that has exited leaves its segment but not its maps: its sites
//! print as addresses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::{fmt_bytes, fmt_count, fmt_ns};
use crate::segment::{self, RawSite, ReadError, Segment};
use memscope_abi::{self as abi, names::SITE_KINDS};

/// One site, added up over every thread's table.
#[derive(Serialize, Clone, Debug)]
pub struct Site {
    pub kind: &'static str,
    /// False for estimates (sampled kinds).
    pub exact: bool,
    pub count: u64,
    pub bytes: u64,
    pub max: u64,
    /// The allocator call (or push) first, then its callers.
    pub frames: Vec<Frame>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Frame {
    pub address: String,
    /// `object+0xoffset`, when the maps name it.
    pub object: Option<String>,
    pub function: Option<String>,
    pub file: Option<String>,
    pub line: Option<u32>,
}

impl Frame {
    pub fn short(&self) -> String {
        let place = match (&self.file, self.line) {
            (Some(f), Some(l)) => format!(
                " ({}:{l})",
                Path::new(f)
                    .file_name()
                    .map_or(f.clone(), |n| n.to_string_lossy().into_owned())
            ),
            _ => String::new(),
        };
        match (&self.function, &self.object) {
            (Some(func), _) => format!("{func}{place}"),
            (None, Some(obj)) => obj.clone(),
            (None, None) => self.address.clone(),
        }
    }
}

/// Every site of `pid`'s segment, largest count first within each kind;
/// with `tell`, a line on stderr when they cannot be symbolized.
pub fn collect(dir: &Path, pid: u32, tell: bool) -> Result<Vec<Site>, ReadError> {
    let seg = segment::find(dir, pid)?;
    let symbols = Symbolizer::new(if seg.is_live() { Some(pid) } else { None }, tell);
    collect_from(&seg, symbols)
}

/// As `collect`, for a segment already open (perhaps of a process that
/// has exited), symbolized with `maps`, the text of the process's
/// `/proc/PID/maps` saved while it ran (`memscope-stat run --report`).
pub fn collect_with_maps(seg: &Segment, maps: &str) -> Result<Vec<Site>, ReadError> {
    let symbols = Symbolizer {
        maps: maps.lines().filter_map(parse_map).collect(),
        loaders: HashMap::new(),
    };
    collect_from(seg, symbols)
}

fn collect_from(seg: &Segment, mut symbols: Symbolizer) -> Result<Vec<Site>, ReadError> {
    let raw = seg.sites()?;
    let mut sum: HashMap<(u32, Vec<u64>), RawSite> = HashMap::new();
    for r in raw {
        let e = sum.entry((r.kind, r.frames.clone())).or_insert(RawSite {
            count: 0,
            bytes: 0,
            max: 0,
            ..r.clone()
        });
        e.count = e.count.saturating_add(r.count);
        e.bytes = e.bytes.saturating_add(r.bytes);
        e.max = e.max.max(r.max);
    }
    let out: Vec<Site> = sum
        .into_values()
        .map(|r| {
            let (name, _, exact) = SITE_KINDS[(r.kind - 1) as usize];
            Site {
                kind: name,
                exact,
                count: r.count,
                bytes: r.bytes,
                max: r.max,
                frames: {
                    // A caller whose address is not a return address ends
                    // the chain there (see `Symbolizer::returns`).
                    let believed = 1 + r
                        .frames
                        .iter()
                        .skip(1)
                        .take_while(|&&a| symbols.returns(a))
                        .count();
                    r.frames
                        .iter()
                        .take(believed)
                        .map(|&a| symbols.frame(a))
                        .collect()
                },
            }
        })
        .collect();
    // Call sites the compiler duplicated (an unrolled loop, one source
    // line) are one site to the reader: merged by what they symbolize to.
    let mut merged: Vec<Site> = Vec::new();
    let mut at: HashMap<(&'static str, Vec<String>), usize> = HashMap::new();
    for s in out {
        let key = (s.kind, s.frames.iter().map(Frame::short).collect::<Vec<_>>());
        match at.get(&key) {
            Some(&i) => {
                let m = &mut merged[i];
                m.count = m.count.saturating_add(s.count);
                m.bytes = m.bytes.saturating_add(s.bytes);
                m.max = m.max.max(s.max);
            }
            None => {
                at.insert(key, merged.len());
                merged.push(s);
            }
        }
    }
    merged.sort_by(|a, b| {
        a.kind
            .cmp(b.kind)
            .then(b.count.cmp(&a.count))
            .then(b.bytes.cmp(&a.bytes))
    });
    Ok(merged)
}

/// The `top` most frequent sites of each kind, in `collect`'s order.
pub fn top_per_kind(sites: &[Site], top: usize) -> Vec<&Site> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    sites
        .iter()
        .filter(|s| {
            let n = seen.entry(s.kind).or_insert(0);
            *n += 1;
            *n <= top
        })
        .collect()
}

/// Text: per kind, the `top` sites.
pub fn text(sites: &[Site], top: usize) -> String {
    let mut s = String::new();
    if sites.is_empty() {
        return "no call sites recorded (none of the recorded kinds happened, or the process predates them)\n".into();
    }
    for (i, (name, what, exact)) in SITE_KINDS.iter().enumerate() {
        let of: Vec<&Site> = sites.iter().filter(|x| x.kind == *name).collect();
        if of.is_empty() {
            continue;
        }
        let kind = i as u32 + 1;
        let tag = if *exact { "exact" } else { "estimated" };
        let total: u64 = of.iter().map(|x| x.count).fold(0, u64::saturating_add);
        s += &format!("{name}: {what} ({tag}; {} in all)\n", fmt_count(total));
        for x in of.iter().take(top) {
            let share = 100.0 * x.count as f64 / total.max(1) as f64;
            let amounts = if kind == abi::SITE_SCOPE {
                format!("{} held, longest {}", fmt_ns(x.bytes), fmt_ns(x.max))
            } else {
                format!("{}, largest {}", fmt_bytes(x.bytes), fmt_bytes(x.max))
            };
            let head = x.frames.first().map_or("?".into(), Frame::short);
            s += &format!(
                "  {:>10} {share:>5.1}%  {head}  [{amounts}]\n",
                fmt_count(x.count)
            );
            for f in x.frames.iter().skip(1) {
                s += &format!("  {:>10}         <- {}\n", "", f.short());
            }
        }
        if of.len() > top {
            s += &format!("  ... {} more\n", of.len() - top);
        }
    }
    s
}

/// A few lines for `show`: per kind, the `top` sites' first frames.
pub fn summary(sites: &[Site], top: usize) -> String {
    let mut s = String::new();
    for (name, _, exact) in SITE_KINDS.iter() {
        let of: Vec<&Site> = sites.iter().filter(|x| x.kind == *name).take(top).collect();
        if of.is_empty() {
            continue;
        }
        let tag = if *exact { "" } else { " (estimated)" };
        let list: Vec<String> = of
            .iter()
            .map(|x| {
                format!(
                    "{} {}",
                    fmt_count(x.count),
                    x.frames.first().map_or("?".into(), Frame::short)
                )
            })
            .collect();
        s += &format!("  {name}{tag}: {}\n", list.join(", "));
    }
    s
}

/// Finds objects and symbols for the addresses of one process.
struct Symbolizer {
    maps: Vec<Mapping>,
    loaders: HashMap<PathBuf, Option<Object>>,
}

struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: PathBuf,
}

struct Object {
    loader: addr2line::Loader,
    /// The file's bytes (to check that a return address follows a call).
    data: Vec<u8>,
    /// PT_LOAD segments: (file offset, size, virtual address).
    segments: Vec<(u64, u64, u64)>,
    /// Function symbols (static and dynamic): start, size, name; sorted.
    symbols: Vec<(u64, u64, String)>,
}

impl Symbolizer {
    fn new(pid: Option<u32>, tell: bool) -> Symbolizer {
        let maps = match pid {
            None => {
                if tell {
                    eprintln!(
                        "memscope-stat: the process has exited: its call sites are addresses, not symbolized"
                    );
                }
                Vec::new()
            }
            Some(p) => match std::fs::read_to_string(format!("/proc/{p}/maps")) {
                Ok(t) => t.lines().filter_map(parse_map).collect(),
                Err(e) => {
                    if tell {
                        eprintln!("memscope-stat: cannot read /proc/{p}/maps ({e}): call sites are addresses, not symbolized");
                    }
                    Vec::new()
                }
            },
        };
        Symbolizer {
            maps,
            loaders: HashMap::new(),
        }
    }

    /// Whether `addr` can be a return address: in an executable mapping
    /// of a file, just after a call instruction. Callers are found by
    /// following frame pointers, and code built without them may leave
    /// any value in rbp: a pointer into the heap or the stack, or to a
    /// struct whose second word is a function pointer (a function's first
    /// byte, not after a call). Unknown (no maps, an unreadable object):
    /// believed.
    fn returns(&mut self, addr: u64) -> bool {
        if self.maps.is_empty() {
            return true;
        }
        let Some(m) = self.maps.iter().find(|m| (m.start..m.end).contains(&addr)) else {
            return false;
        };
        let file_off = addr - m.start + m.offset;
        let path = m.path.clone();
        let obj = self
            .loaders
            .entry(path.clone())
            .or_insert_with(|| Object::open(&path));
        match obj {
            Some(o) => o.after_call(file_off),
            None => true,
        }
    }

    fn frame(&mut self, addr: u64) -> Frame {
        let mut f = Frame {
            address: format!("{addr:#x}"),
            object: None,
            function: None,
            file: None,
            line: None,
        };
        let Some(m) = self.maps.iter().find(|m| (m.start..m.end).contains(&addr)) else {
            return f;
        };
        let file_off = addr - m.start + m.offset;
        f.object = Some(format!(
            "{}+{file_off:#x}",
            m.path
                .file_name()
                .map_or(m.path.display().to_string(), |n| n.to_string_lossy().into_owned())
        ));
        let path = m.path.clone();
        let obj = self
            .loaders
            .entry(path.clone())
            .or_insert_with(|| Object::open(&path));
        let Some(obj) = obj else { return f };
        let Some(vaddr) = obj.vaddr_of(file_off) else {
            return f;
        };
        // A return address: the call is the instruction before it.
        let probe = vaddr.saturating_sub(1);
        if let Ok(mut frames) = obj.loader.find_frames(probe) {
            // Innermost first: the outermost frame of an inlined chain is
            // the function the return address is in, and its location is
            // where that function made the call (a header's inline
            // wrapper, such as memscope_push, is not the site).
            while let Ok(Some(fr)) = frames.next() {
                if let Some(name) = fr
                    .function
                    .and_then(|n| n.demangle().ok().map(|d| d.into_owned()))
                {
                    f.function = Some(name);
                }
                if let Some(l) = fr.location {
                    f.file = l.file.map(str::to_owned);
                    f.line = l.line;
                }
            }
        }
        if f.function.is_none() {
            f.function = obj.symbol(probe);
        }
        f
    }
}

impl Object {
    fn open(path: &Path) -> Option<Object> {
        use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let segments = file
            .segments()
            .filter_map(|s| {
                let (off, size) = s.file_range();
                (size > 0).then(|| (off, size, s.address()))
            })
            .collect();
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        symbols.sort();
        symbols.dedup_by_key(|s| s.0);
        let loader = addr2line::Loader::new(path).ok()?;
        Some(Object {
            loader,
            data,
            segments,
            symbols,
        })
    }

    /// Whether the bytes before file offset `off` end with an x86-64 call:
    /// `e8 rel32`, or `ff /2` (an indirect call through a register or
    /// memory) whose ModRM, SIB and displacement end exactly there (a REX
    /// prefix before it changes nothing here). Other architectures:
    /// believed.
    fn after_call(&self, off: u64) -> bool {
        if !cfg!(target_arch = "x86_64") {
            return true;
        }
        let Ok(off) = usize::try_from(off) else {
            return false;
        };
        let byte = |back: usize| off.checked_sub(back).and_then(|i| self.data.get(i)).copied();
        if byte(5) == Some(0xe8) {
            return true;
        }
        (2..=7).any(|k| {
            byte(k) == Some(0xff)
                && byte(k - 1)
                    .is_some_and(|modrm| (modrm >> 3) & 7 == 2 && indirect_call_len(modrm, byte(k - 2)) == k)
        })
    }

    /// The function symbol whose range holds `addr` (its size counts: an
    /// address past a symbol's end is not that symbol's), demangled.
    fn symbol(&self, addr: u64) -> Option<String> {
        let i = self.symbols.partition_point(|s| s.0 <= addr).checked_sub(1)?;
        let (start, size, name) = &self.symbols[i];
        (addr < start + size).then(|| addr2line::demangle_auto(name.as_str().into(), None).into_owned())
    }

    fn vaddr_of(&self, file_off: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(off, size, _)| (*off..off + size).contains(&file_off))
            .map(|(off, _, vaddr)| vaddr + (file_off - off))
    }
}

/// The length of an `ff /2` call with this ModRM byte (and the SIB byte
/// after it, if any): opcode, ModRM, SIB, displacement.
fn indirect_call_len(modrm: u8, sib: Option<u8>) -> usize {
    let (md, rm) = (modrm >> 6, modrm & 7);
    let with_sib = md != 3 && rm == 4;
    let disp = match md {
        0 if rm == 5 => 4,
        0 if with_sib && sib.is_some_and(|b| b & 7 == 5) => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    2 + usize::from(with_sib) + disp
}

/// One line of /proc/PID/maps with a file behind it.
fn parse_map(line: &str) -> Option<Mapping> {
    let mut it = line.split_whitespace();
    let (range, perms, offset) = (it.next()?, it.next()?, it.next()?);
    let _dev = it.next()?;
    let _inode = it.next()?;
    let path: String = it.collect::<Vec<_>>().join(" ");
    if !perms.contains('x') || !path.starts_with('/') {
        return None;
    }
    let (s, e) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        offset: u64::from_str_radix(offset, 16).ok()?,
        path: PathBuf::from(path),
    })
}
