//! The size classes of the NORECLAIM front end (`depot`, `magazine`).
//!
//! They are jemalloc's own classes from 16 bytes to `MAX_SIZE` (4 MiB):
//! 16-byte steps to 128, then four classes per doubling (160, 192, 224,
//! 256, 320, ...), which is how jemalloc spaces them with 4 KiB pages. So a
//! block jemalloc makes for a class has exactly the class's usable size,
//! and rounding a size up to a multiple of an alignment of at most a page
//! before picking its class gives a block with that alignment (jemalloc's
//! own rule, `sz_sa2u`: small classes are laid out in page-aligned slabs,
//! large ones start on pages).
//!
//! Alignments above a page get classes of their own: power-of-two sizes
//! from 8 KiB to `MAX_SIZE`, each block aligned to its size, so it serves
//! any request no larger and no more aligned than it.
//!
//! Rule: pure arithmetic; usable anywhere, scoped threads included.

/// The largest request (and alignment) the front end serves.
pub const MAX_SIZE: usize = 4 << 20;
/// Classes with jemalloc's natural alignment.
pub const PLAIN: usize = 8 + (MAX_SIZE.trailing_zeros() as usize - 7) * 4;
/// Smallest alignment with classes of its own (above a page).
const ALIGNED_MIN_SHIFT: u32 = 13;
/// Every class: the plain ones, then the power-of-two aligned ones.
pub const COUNT: usize = PLAIN + (MAX_SIZE.trailing_zeros() - ALIGNED_MIN_SHIFT + 1) as usize;
/// The largest plain class jemalloc serves from slabs (small): blocks of
/// these classes cannot change size in place, so their class is known from
/// their page alone.
pub const SMALL_MAX: usize = 14 << 10;
/// The largest alignment plain classes give (jemalloc's page).
pub const PAGE: usize = 4096;

const _: () = assert!(PLAIN == 68 && COUNT == 78);

/// Per class, what the hot paths ask of it, computed at compile time (a
/// class's size takes a few branches, its chain length a division).
pub struct Info {
    pub chain: u32,
    /// Over `SMALL_MAX`: kept in a thread's lists only while it is in
    /// NORECLAIM.
    pub large: bool,
    /// Its page-class table entry can be trusted without asking jemalloc:
    /// a plain class jemalloc serves from slabs.
    pub trusted: bool,
}

pub static INFO: [Info; COUNT] = {
    let mut out = [const {
        Info {
            chain: 0,
            large: false,
            trusted: false,
        }
    }; COUNT];
    let mut c = 0;
    while c < COUNT {
        out[c] = Info {
            chain: chain_len(c) as u32,
            large: size_of(c) > SMALL_MAX,
            trusted: c < PLAIN && size_of(c) <= SMALL_MAX,
        };
        c += 1;
    }
    out
};

/// The plain class for `size` (`1..=MAX_SIZE`; 0 counts as 1).
#[inline(always)]
pub const fn of_size(size: usize) -> usize {
    if size <= 128 {
        return if size == 0 { 0 } else { size.div_ceil(16) - 1 };
    }
    // size lies in (2^(lg-1), 2^lg], split into four steps of 2^(lg-3).
    let lg = usize::BITS - (size - 1).leading_zeros();
    let step_shift = lg - 3;
    8 + (lg as usize - 8) * 4 + (((size - 1) >> step_shift) & 3)
}

/// The usable size of class `c` (also the size to ask jemalloc for).
#[inline(always)]
pub const fn size_of(c: usize) -> usize {
    if c < 8 {
        return (c + 1) * 16;
    }
    if c >= PLAIN {
        return 1 << (ALIGNED_MIN_SHIFT as usize + c - PLAIN);
    }
    let group = (c - 8) / 4;
    let lg = 8 + group;
    (1 << (lg - 1)) + ((c - 8) % 4 + 1) * (1 << (lg - 3))
}

/// The alignment a block of class `c` is guaranteed beyond jemalloc's
/// natural one (0 for plain classes: see `serves`).
#[inline(always)]
pub const fn alignment_of(c: usize) -> usize {
    if c >= PLAIN {
        size_of(c)
    } else {
        0
    }
}

/// The class serving `size` bytes aligned to `align` (a power of two, 0 or
/// 1 for none), or None when the front end cannot serve it (larger than
/// `MAX_SIZE`).
#[inline(always)]
pub const fn for_request(size: usize, align: usize) -> Option<usize> {
    if align <= 16 {
        if size > MAX_SIZE {
            return None;
        }
        return Some(of_size(size));
    }
    if align <= PAGE {
        // Checked: a size near usize::MAX wrapped to a small class here,
        // and NORECLAIM handed out a 64-byte block for SIZE_MAX - 1.
        if size > MAX_SIZE {
            return None;
        }
        let rounded = (if size == 0 { 1 } else { size } + align - 1) & !(align - 1);
        if rounded > MAX_SIZE {
            return None;
        }
        return Some(of_size(rounded));
    }
    let need = if size > align { size } else { align };
    if need > MAX_SIZE {
        return None;
    }
    let shift = need.next_power_of_two().trailing_zeros();
    Some(PLAIN + (shift - ALIGNED_MIN_SHIFT) as usize)
}

/// True if a block of class `k` serves a request of class `c` for `align`
/// (a power of two, 0 for none): large enough, and aligned enough. For
/// plain classes and alignments up to a page, a class whose size is a
/// multiple of the alignment is aligned to it (jemalloc's layout).
#[inline(always)]
pub const fn serves(k: usize, c: usize, align: usize) -> bool {
    if k < c || (c >= PLAIN) != (k >= PLAIN) {
        return false;
    }
    k >= PLAIN || align <= 16 || size_of(k).is_multiple_of(align)
}

/// The plain class whose usable size is exactly `usable`, if any.
#[inline]
pub const fn exact(usable: usize) -> Option<usize> {
    if usable < 16 || usable > MAX_SIZE {
        return None;
    }
    let c = of_size(usable);
    if size_of(c) == usable {
        Some(c)
    } else {
        None
    }
}

/// Blocks a depot chain of class `c` holds when the maintenance thread
/// makes it, and the most a thread takes at once: 32 KiB of blocks, from 1
/// to 64 of them.
#[inline(always)]
pub const fn chain_len(c: usize) -> usize {
    let n = (32 << 10) / size_of(c);
    if n < 1 {
        1
    } else if n > 64 {
        64
    } else {
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_jemallocs_sizes_in_order() {
        let mut prev = 0;
        for c in 0..PLAIN {
            let s = size_of(c);
            assert!(s > prev, "class {c}");
            assert_eq!(of_size(s), c, "size {s}");
            assert_eq!(of_size(prev + 1), c, "size {}", prev + 1);
            assert_eq!(exact(s), Some(c));
            prev = s;
        }
        assert_eq!(size_of(PLAIN - 1), MAX_SIZE);
        assert_eq!(size_of(COUNT - 1), MAX_SIZE);
        let expect = [
            16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640,
        ];
        for (c, &s) in expect.iter().enumerate() {
            assert_eq!(size_of(c), s);
        }
        assert_eq!(exact(100), None);
        assert_eq!(exact(SMALL_MAX), Some(of_size(SMALL_MAX)));
    }

    #[test]
    fn every_request_gets_a_class_that_fits_and_aligns() {
        for shift in 0..=22u32 {
            let align = 1usize << shift;
            for size in (0..=MAX_SIZE)
                .step_by(389)
                .chain([0, 1, align - 1, align, align + 1, MAX_SIZE])
            {
                let Some(c) = for_request(size, align) else {
                    assert!(size.max(align) > MAX_SIZE || size.next_multiple_of(align.min(PAGE)) > MAX_SIZE);
                    continue;
                };
                assert!(size_of(c) >= size, "size {size} align {align}");
                if align > PAGE {
                    assert!(alignment_of(c) >= align);
                } else if align > 16 {
                    // jemalloc's rule: the class of a multiple of `align`
                    // is a multiple of `align` (for align <= page).
                    assert_eq!(size_of(c) % align, 0, "size {size} align {align}");
                }
            }
        }
        assert_eq!(for_request(MAX_SIZE + 1, 0), None);
        assert_eq!(for_request(1, 2 * MAX_SIZE), None);
        for align in (0..usize::BITS).map(|s| 1usize << s) {
            for size in [
                usize::MAX,
                usize::MAX - 1,
                usize::MAX - align + 1,
                usize::MAX / 2 + 1,
                MAX_SIZE + 1,
            ] {
                assert_eq!(for_request(size, align), None, "size {size:#x} align {align:#x}");
            }
        }
    }

    #[test]
    fn larger_classes_serve_only_what_they_align() {
        let c = for_request(10 << 10, 4096).unwrap();
        assert_eq!(size_of(c), 12 << 10);
        assert!(
            !serves(of_size(14 << 10), c, 4096),
            "14 KiB blocks are only 2 KiB-aligned"
        );
        assert!(serves(of_size(16 << 10), c, 4096));
        assert!(serves(of_size(14 << 10), of_size(100), 0));
        assert!(!serves(PLAIN, of_size(100), 0), "aligned classes are kept apart");
    }

    #[test]
    fn chains_hold_32_kib_within_bounds() {
        assert_eq!(chain_len(0), 64);
        assert_eq!(chain_len(of_size(1024)), 32);
        assert_eq!(chain_len(of_size(MAX_SIZE)), 1);
    }
}
