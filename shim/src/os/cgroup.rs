//! The process's memory cgroup, for limits given as percentages and for
//! the maintenance thread's pressure watch: where its directory is (cgroup
//! v2, else the v1 memory controller), its memory limit (the smallest
//! `memory.max` on the way up to the root, else the smallest `memory.high`,
//! else v1's `memory.limit_in_bytes`), and its pressure and event files.
//!
//! Read at load and again by the maintenance thread about once a second,
//! so a process moved to another cgroup, or a limit changed under it, is
//! followed. Everything here reads small files into stack buffers: no
//! allocation (the constructor resolves limits before memscope's own
//! allocator is safe to use), and never on a scoped thread.

use core::ffi::CStr;

use crate::os;

/// A NUL-terminated path built on the stack.
pub struct Path {
    buf: [u8; 1024],
    len: usize,
}

impl Path {
    fn new() -> Path {
        Path {
            buf: [0; 1024],
            len: 0,
        }
    }

    fn from(parts: &[&[u8]]) -> Option<Path> {
        let mut p = Path::new();
        for part in parts {
            p.push(part)?;
        }
        Some(p)
    }

    fn push(&mut self, bytes: &[u8]) -> Option<()> {
        // Room for the NUL, and no NUL inside (a path from the kernel has none).
        if self.len + bytes.len() >= self.buf.len() || bytes.contains(&0) {
            return None;
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        self.buf[self.len] = 0;
        Some(())
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf[..=self.len]).unwrap_or(c"")
    }

    /// `self/name`, as a new path.
    fn join(&self, name: &[u8]) -> Option<Path> {
        Path::from(&[self.bytes(), b"/", name])
    }

    /// Drops the last component, unless that would go above `floor` bytes.
    fn up(&mut self, floor: usize) -> bool {
        match self.bytes().iter().rposition(|&c| c == b'/') {
            Some(i) if i >= floor && i > 0 => {
                self.len = i;
                self.buf[i] = 0;
                true
            }
            _ => false,
        }
    }
}

/// The process's cgroup directories that may hold memory files, each with
/// the length of its hierarchy's mount point (the walk up stops there).
pub struct Dirs {
    pub v2: Option<(Path, usize)>,
    pub v1_memory: Option<(Path, usize)>,
}

/// Finds them from `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub fn dirs() -> Dirs {
    let mut cg = [0u8; 4096];
    let n = os::read_small_file(c"/proc/self/cgroup", &mut cg);
    let mut mi = [0u8; 65536];
    let m = os::read_small_file(c"/proc/self/mountinfo", &mut mi);
    let (v2_path, v1_path) = cgroup_paths(&cg[..n]);
    let (v2_mount, v1_mount) = mounts(&mi[..m]);
    let dir = |path: Option<&[u8]>, mount: Option<(&[u8], &[u8])>| {
        let (path, (root, point)) = (path?, mount?);
        let rel = if root == b"/" {
            path
        } else {
            path.strip_prefix(root)?
        };
        let rel = if rel == b"/" { &b""[..] } else { rel };
        Some((Path::from(&[point, rel])?, point.len()))
    };
    Dirs {
        v2: dir(v2_path, v2_mount),
        v1_memory: dir(v1_path, v1_mount),
    }
}

/// From `/proc/self/cgroup`: the v2 path (`0::PATH`) and the v1 memory
/// controller's (`N:...memory...:PATH`).
pub fn cgroup_paths(text: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.split(|&c| c == b'\n') {
        let mut f = line.splitn(3, |&c| c == b':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if id == b"0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(|&c| c == b',').any(|c| c == b"memory") {
            v1 = Some(path);
        }
    }
    (v2, v1)
}

/// A mount's root (the part of its hierarchy it shows) and mount point.
pub type Mount<'a> = (&'a [u8], &'a [u8]);

/// From `/proc/self/mountinfo`: the cgroup2 mount and the v1 hierarchy
/// with the memory controller.
pub fn mounts(text: &[u8]) -> (Option<Mount<'_>>, Option<Mount<'_>>) {
    let (mut v2, mut v1) = (None, None);
    for line in text.split(|&c| c == b'\n') {
        let fields: [&[u8]; 5] = {
            let mut it = line.split(|&c| c == b' ');
            let mut f = [&b""[..]; 5];
            for slot in f.iter_mut() {
                *slot = it.next().unwrap_or(b"");
            }
            f
        };
        let (root, point) = (fields[3], fields[4]);
        // After the optional fields: "- fstype source super-options".
        let Some(dash) = line.windows(3).position(|w| w == b" - ") else {
            continue;
        };
        let mut tail = line[dash + 3..].split(|&c| c == b' ');
        let fstype = tail.next().unwrap_or(b"");
        let _source = tail.next();
        let options = tail.next().unwrap_or(b"");
        if fstype == b"cgroup2" && v2.is_none() {
            v2 = Some((root, point));
        } else if fstype == b"cgroup" && options.split(|&c| c == b',').any(|o| o == b"memory") {
            v1 = Some((root, point));
        }
    }
    (v2, v1)
}

/// A limit file's value: bytes, or None for "max" (v2) or v1's
/// "unlimited" (a number near 2^63).
pub fn parse_limit(text: &[u8]) -> Option<u64> {
    let t = text.trim_ascii();
    if t == b"max" {
        return None;
    }
    let v: u64 = core::str::from_utf8(t).ok()?.parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// The smallest limit in `file` from `dir` up to its mount point.
fn smallest_up(dir: &(Path, usize), file: &[u8]) -> Option<u64> {
    let mut d = Path::from(&[dir.0.bytes()])?;
    let mut best: Option<u64> = None;
    loop {
        if let Some(p) = d.join(file) {
            let mut buf = [0u8; 64];
            let n = os::read_small_file(p.as_cstr(), &mut buf);
            if let Some(v) = parse_limit(&buf[..n]) {
                best = Some(best.map_or(v, |b| b.min(v)));
            }
        }
        if !d.up(dir.1) {
            return best;
        }
    }
}

/// Where a memory limit came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSource {
    MemoryMax,
    MemoryHigh,
    V1Limit,
}

/// The process's memory limit: cgroup v2 `memory.max`, else `memory.high`
/// (the smallest on the way up), else v1 `memory.limit_in_bytes`.
pub fn memory_limit() -> Option<(u64, LimitSource)> {
    let d = dirs();
    if let Some(v2) = &d.v2 {
        if let Some(v) = smallest_up(v2, b"memory.max") {
            return Some((v, LimitSource::MemoryMax));
        }
        if let Some(v) = smallest_up(v2, b"memory.high") {
            return Some((v, LimitSource::MemoryHigh));
        }
    }
    let v1 = d.v1_memory.as_ref()?;
    smallest_up(v1, b"memory.limit_in_bytes").map(|v| (v, LimitSource::V1Limit))
}

/// True if `path` can be opened for reading.
fn exists(path: &CStr) -> bool {
    match os::open_read(path) {
        Ok(fd) => {
            os::close(fd);
            true
        }
        Err(_) => false,
    }
}

/// The pressure file to watch: the v2 cgroup's `memory.pressure`, else the
/// whole machine's `/proc/pressure/memory`; None without PSI.
pub fn pressure_file() -> Option<Path> {
    if let Some(p) = dirs().v2.and_then(|(d, _)| d.join(b"memory.pressure")) {
        if exists(p.as_cstr()) {
            return Some(p);
        }
    }
    let p = Path::from(&[b"/proc/pressure/memory"])?;
    exists(p.as_cstr()).then_some(p)
}

/// The v2 cgroup's `memory.events`, if it has one (the memory controller
/// enabled for it).
pub fn events_file() -> Option<Path> {
    let p = dirs().v2.and_then(|(d, _)| d.join(b"memory.events"))?;
    exists(p.as_cstr()).then_some(p)
}

/// The `high` count of a `memory.events` text.
pub fn events_high(text: &[u8]) -> Option<u64> {
    text.split(|&c| c == b'\n').find_map(|line| {
        let rest = line.strip_prefix(b"high ")?;
        core::str::from_utf8(rest.trim_ascii()).ok()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v2_and_v1_memory_paths() {
        let hybrid = b"9:name=systemd:/\n4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";
        assert_eq!(
            cgroup_paths(hybrid),
            (Some(&b"/"[..]), Some(&b"/process_api/abc"[..]))
        );
        let v2 = b"0::/system.slice/db.service\n";
        assert_eq!(cgroup_paths(v2), (Some(&b"/system.slice/db.service"[..]), None));
        let v1 = b"7:cpu,cpuacct:/x\n5:memory,hugetlb:/y\n";
        assert_eq!(cgroup_paths(v1), (None, Some(&b"/y"[..])));
        assert_eq!(cgroup_paths(b""), (None, None));
    }

    #[test]
    fn finds_cgroup_mounts_after_the_optional_fields() {
        let text = b"24 30 0:22 / /sys/fs/cgroup rw,nosuid shared:9 - tmpfs tmpfs ro,mode=755\n\
            35 24 0:30 / /sys/fs/cgroup/memory rw,relatime shared:16 - cgroup cgroup rw,memory\n\
            36 24 0:31 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
            40 24 0:34 /kubepods/pod1 /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let (v2, v1) = mounts(text);
        assert_eq!(v2, Some((&b"/kubepods/pod1"[..], &b"/sys/fs/cgroup/unified"[..])));
        assert_eq!(v1, Some((&b"/"[..], &b"/sys/fs/cgroup/memory"[..])));
    }

    #[test]
    fn limits_parse_and_unlimited_is_none() {
        assert_eq!(parse_limit(b"268435456\n"), Some(256 << 20));
        assert_eq!(parse_limit(b"max\n"), None);
        assert_eq!(parse_limit(b"9223372036854771712\n"), None);
        assert_eq!(parse_limit(b""), None);
        assert_eq!(parse_limit(b"garbage"), None);
    }

    #[test]
    fn events_high_is_read() {
        let t = b"low 0\nhigh 17\nmax 2\noom 0\noom_kill 0\n";
        assert_eq!(events_high(t), Some(17));
        assert_eq!(events_high(b"low 0\n"), None);
    }

    #[test]
    fn paths_walk_up_to_the_mount_point_only() {
        let mut p = Path::from(&[b"/sys/fs/cgroup", b"/a/b"]).unwrap();
        let floor = b"/sys/fs/cgroup".len();
        assert!(p.up(floor));
        assert_eq!(p.bytes(), b"/sys/fs/cgroup/a");
        assert!(p.up(floor));
        assert_eq!(p.bytes(), b"/sys/fs/cgroup");
        assert!(!p.up(floor));
        assert_eq!(p.as_cstr().to_bytes(), b"/sys/fs/cgroup");
    }

    #[test]
    fn this_process_has_a_readable_answer() {
        // Whatever the machine: no panic, and a limit is a positive number.
        if let Some((v, _)) = memory_limit() {
            assert!(v > 0);
        }
        let _ = pressure_file();
        let _ = events_file();
    }
}
