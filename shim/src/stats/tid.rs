//! The calling thread's kernel thread id, without a syscall where glibc's
//! thread descriptor can be read: a thread's first allocator call must not
//! make syscalls that a seccomp filter installed before the thread was
//! born may forbid. The offset of the tid in glibc's `struct pthread` is
//! learnt once, while the segment is made, by finding the tid `gettid`
//! returns in the caller's descriptor; only a single unambiguous match is
//! trusted. Otherwise (another libc, an ambiguous layout) `gettid` is used.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Byte offset of the tid in `struct pthread`, or 0 if unknown.
static OFFSET: AtomicUsize = AtomicUsize::new(0);
/// How far into the descriptor to look (glibc's is over 2 KiB).
const SCAN: usize = 1024;

pub fn learn_offset() {
    // SAFETY: gettid has no preconditions; pthread_self points at the
    // calling thread's descriptor, of which the first SCAN bytes are read.
    unsafe {
        let tid = crate::os::gettid();
        let base = libc::pthread_self() as *const u32;
        let mut found = 0;
        let mut matches = 0;
        for i in 1..SCAN / 4 {
            if base.add(i).read_volatile() == tid {
                found = i * 4;
                matches += 1;
            }
        }
        if matches == 1 {
            OFFSET.store(found, Relaxed);
        }
    }
}

pub fn current() -> u32 {
    let off = OFFSET.load(Relaxed);
    // SAFETY: as in `learn_offset`; the offset was found in this libc's
    // descriptor layout.
    unsafe {
        if off != 0 {
            (libc::pthread_self() as *const u8)
                .add(off)
                .cast::<u32>()
                .read_volatile()
        } else {
            crate::os::gettid()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_learnt_offset_gives_every_thread_its_own_tid() {
        super::learn_offset();
        for _ in 0..4 {
            std::thread::spawn(|| {
                // SAFETY: gettid has no preconditions.
                let real = crate::os::gettid();
                assert_eq!(super::current(), real);
            })
            .join()
            .unwrap();
        }
    }
}
