//! `kvd-rs`: examples/kvd.c's protocol and behaviour in Rust, with memscope
//! as its `#[global_allocator]`: no `LD_PRELOAD`, the allocator is linked
//! in (`make demo` runs it so, and `memscope-stat` reads it as it reads
//! the C daemon). The store is a `BTreeMap` behind a `Mutex`; with
//! `--scopes`, everything that allocates or frees while the lock is held
//! runs inside NORECLAIM (node and value allocations inside
//! `NORECLAIM | NOFAIL`), which reaches the `BTreeMap`'s own node
//! allocations too: the per-task reach that per-call flags lack. A read
//! cache of recent GET answers is what the program can do without: a
//! reclaimer empties it when memory runs short.
//!
//!   kvd-rs PORT [--scopes]
//!
//! Protocol: `SET k v` / `GET k` / `DEL k` / `STATS` / `SHUTDOWN`, one
//! line each (see kvd.c). No churn thread: the C daemon shows that.

#[global_allocator]
static GLOBAL: memscope::Memscope = memscope::Memscope;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use memscope::{Flags, Needs, Reclaimer, Scope};

/// Recent GET answers, at most this many.
const CACHE_ENTRIES: usize = 4096;

/// GET answers by key. Filled and invalidated with the store lock held
/// (lock order: store, then cache), read alone: a hit never takes the
/// store lock and is never stale.
#[derive(Default)]
struct ReadCache {
    map: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    hits: AtomicU64,
    reclaimed: AtomicU64,
}

impl ReadCache {
    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        let v = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(k).cloned();
        if v.is_some() {
            self.hits.fetch_add(1, Relaxed);
        }
        v
    }

    fn put(&self, k: &[u8], v: &[u8]) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= CACHE_ENTRIES {
            m.clear();
        }
        m.insert(k.to_vec(), v.to_vec());
    }

    fn forget(&self, k: &[u8]) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(k);
    }

    /// The reclaimer: drops entries until about `want` bytes are freed.
    fn shrink(&self, want: usize) -> usize {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut freed = 0;
        m.retain(|k, v| {
            if freed >= want {
                return true;
            }
            freed += k.len() + v.len();
            false
        });
        self.reclaimed.fetch_add(freed as u64, Relaxed);
        freed
    }
}

struct Store {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    cache: Arc<ReadCache>,
    scopes: bool,
    /// Lock-hold times: log2 buckets of nanoseconds.
    holds: [AtomicU64; 64],
    hold_max: AtomicU64,
    stopping: AtomicBool,
}

impl Store {
    /// Runs `f` on the map under the lock, in a NORECLAIM scope if asked,
    /// and records how long the lock was held.
    fn locked<R>(&self, f: impl FnOnce(&mut BTreeMap<Vec<u8>, Vec<u8>>) -> R) -> R {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let t = Instant::now();
        let r = {
            let _scope = self.scopes.then(|| Scope::enter(Flags::NORECLAIM));
            f(&mut map)
        };
        let ns = t.elapsed().as_nanos() as u64;
        drop(map);
        self.holds[63 - ns.max(1).leading_zeros() as usize].fetch_add(1, Relaxed);
        self.hold_max.fetch_max(ns, Relaxed);
        r
    }

    fn stats(&self) -> String {
        let hist: Vec<u64> = self.holds.iter().map(|h| h.load(Relaxed)).collect();
        let total: u64 = hist.iter().sum();
        let max = self.hold_max.load(Relaxed);
        let q = |p: f64| {
            let rank = (total as f64 * p) as u64;
            let mut seen = 0;
            for (i, n) in hist.iter().enumerate() {
                seen += n;
                if seen > rank {
                    return (2u64 << i).min(max);
                }
            }
            max
        };
        let keys = self.locked(|m| m.len());
        format!(
            "STATS holds={total} hold_p50_ns={} hold_p99_ns={} hold_p999_ns={} hold_max_ns={max} keys={keys} scopes={} cache_hits={} reclaimed_bytes={}",
            q(0.5),
            q(0.99),
            q(0.999),
            self.scopes as u8,
            self.cache.hits.load(Relaxed),
            self.cache.reclaimed.load(Relaxed),
        )
    }
}

fn serve(store: Arc<Store>, stream: TcpStream, port: u16) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    // A thread's first NORECLAIM scope sets up its pool cache (and the
    // first in the process, the pool): not something to do under the lock.
    if store.scopes {
        drop(Scope::enter(Flags::NORECLAIM | Flags::NOFAIL));
    }
    let mut out = stream.try_clone()?;
    let reader = BufReader::new(stream);
    for line in reader.split(b'\n') {
        let line = line?;
        let mut parts = line.splitn(3, |&c| c == b' ');
        let cmd = parts.next().unwrap_or(b"");
        let (a1, a2) = (parts.next(), parts.next());
        let reply: Vec<u8> = match (cmd, a1, a2) {
            (b"SET", Some(k), Some(v)) => {
                let (k, v) = (k.to_vec(), v.to_vec());
                // The key and value were copied outside; the map's node and
                // the replaced value are allocated and freed under the lock.
                let old = store.locked(|m| {
                    let _nofail = store.scopes.then(|| Scope::enter(Flags::NOFAIL));
                    store.cache.forget(&k);
                    m.insert(k, v)
                });
                drop(old);
                b"OK\n".to_vec()
            }
            (b"GET", Some(k), None) => match store.cache.get(k).or_else(|| {
                store.locked(|m| {
                    let v = m.get(k).cloned();
                    if let Some(v) = &v {
                        store.cache.put(k, v);
                    }
                    v
                })
            }) {
                Some(v) => [&b"VALUE "[..], &v, b"\n"].concat(),
                None => b"MISS\n".to_vec(),
            },
            (b"DEL", Some(k), None) => match store.locked(|m| {
                store.cache.forget(k);
                m.remove(k)
            }) {
                Some(_) => b"OK\n".to_vec(),
                None => b"MISS\n".to_vec(),
            },
            (b"STATS", None, None) => (store.stats() + "\n").into_bytes(),
            (b"SHUTDOWN", None, None) => {
                out.write_all(b"BYE\n")?;
                store.stopping.store(true, Relaxed);
                // Wake the accept loop.
                let _ = TcpStream::connect(("127.0.0.1", port));
                return Ok(());
            }
            _ => b"ERR bad request\n".to_vec(),
        };
        out.write_all(&reply)?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(port) = args.get(1).and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: kvd-rs PORT [--scopes]");
        std::process::exit(2);
    };
    let scopes = args.iter().any(|a| a == "--scopes");
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        eprintln!("kvd-rs: cannot listen on 127.0.0.1:{port}: {e}");
        std::process::exit(1);
    });
    let cache = Arc::new(ReadCache::default());
    // Runs on a thread whose NOFAIL allocation failed, or on memscope's
    // maintenance thread above MEMSCOPE_SOFT_LIMIT; unregistered at exit.
    let shrinker = Arc::clone(&cache);
    let _reclaimer = Reclaimer::register("kvd-rs read cache", Needs::NONE, move |want| {
        shrinker.shrink(want)
    });
    let store = Arc::new(Store {
        map: Mutex::new(BTreeMap::new()),
        cache,
        scopes,
        holds: [const { AtomicU64::new(0) }; 64],
        hold_max: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
    });
    println!(
        "kvd-rs: listening on 127.0.0.1:{port}, scopes {}, pid {}, memscope {}",
        if scopes { "on" } else { "off" },
        std::process::id(),
        if memscope::is_loaded() {
            "preloaded"
        } else {
            "linked"
        }
    );
    let mut workers = Vec::new();
    for stream in listener.incoming() {
        if store.stopping.load(Relaxed) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let store = Arc::clone(&store);
        workers.push(std::thread::spawn(move || {
            let _ = serve(store, stream, port);
        }));
    }
    for w in workers {
        let _ = w.join();
    }
    println!("kvd-rs: clean shutdown");
}
