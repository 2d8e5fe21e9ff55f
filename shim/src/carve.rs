//! A scoped thread carving blocks for itself from committed, pre-faulted
//! pool memory, when its lists and the depot have none of the class it
//! needs: what makes NORECLAIM fail only when memory is really gone, not
//! when the maintenance thread's forecast of the class mix was wrong.
//!
//! A carve claims one span from the pool's carve cursor (`pool::claim`, a
//! compare-and-swap) and cuts it into blocks of the class: a chain's worth
//! (about 32 KiB, whole pages) for small classes, one block for large
//! ones, aligned to the class's alignment (a page, or the block's size for
//! the aligned classes). The thread keeps its slow-start allowance and the
//! rest goes to the depot for everyone. Padding in front of an aligned
//! span is cut into naturally aligned power-of-two blocks (a page to
//! 4 MiB) and given to the depot too, so nothing claimed is lost but a
//! class's tail under one block.
//!
//! What such memory costs: jemalloc never sees it, so it never returns to
//! the arena. It stays blocks of its class, reused through lists and depot
//! (`depot::trim` keeps it), and the pool table marks it
//! (`pool::CARVED_BY_MEMSCOPE`) so that every entry point frees, resizes
//! and measures its blocks itself. The memory it can tie up is bounded by
//! each class's peak NORECLAIM demand plus one span per class.
//!
//! Rule: runs on scoped threads: atomics and plain stores to claimed,
//! pre-faulted memory (the table entries are committed with the region
//! they describe); no syscall, no lock, no jemalloc.

use crate::depot::{self, set_next};
use crate::pool;
use crate::sizeclass::{self, PAGE, PLAIN};

/// The span a carve of class `c` claims: its bytes (whole pages, whole
/// blocks) and alignment.
#[inline]
fn span_of(c: usize, blocks: usize) -> (usize, usize) {
    let size = sizeclass::size_of(c);
    let align = if c >= PLAIN { size } else { PAGE };
    let bytes = blocks.saturating_mul(size).next_multiple_of(PAGE);
    (bytes, align)
}

/// True if the uncarved committed pool could hold one block of class `c`
/// when `committed` bytes were committed (the value read before a carve
/// that failed), its alignment padding included: a refusal then was not
/// for want of memory. Judged against that value, not today's: the pool
/// may have grown since.
pub fn fitted_one(c: usize, committed: usize) -> bool {
    let (bytes, align) = span_of(c, 1);
    pool::is_ready() && pool::headroom_at(committed) >= bytes + align - PAGE
}

/// Carves a span of class `c` and returns it as a chain (first block,
/// length: at least one block), or None when the uncarved committed pool
/// is too small even for one block (the pool is exhausted).
pub fn carve(c: usize) -> Option<(usize, usize)> {
    let chain = sizeclass::chain_len(c);
    let (bytes, align) = span_of(c, chain);
    let (start, from, bytes) = match pool::claim(bytes, align) {
        Some((start, from)) => (start, from, bytes),
        None => {
            // Less than a chain left: one block, if that fits.
            let (one, align) = span_of(c, 1);
            let (start, from) = pool::claim(one, align)?;
            (start, from, one)
        }
    };
    give_padding(from, start);
    let size = sizeclass::size_of(c);
    let n = bytes / size;
    pool::mark_carved(start, bytes, c);
    // Link the blocks in address order.
    let mut b = start;
    for _ in 1..n {
        // SAFETY: claimed, committed pool memory, ours alone.
        unsafe { set_next(b, b + size) };
        b += size;
    }
    // SAFETY: as above.
    unsafe { set_next(b, 0) };
    crate::counters::count(crate::counters::Event::NoreclaimCarve);
    Some((start, n))
}

/// Gives the bytes from `from` to `to` (padding claimed before an aligned
/// span) to the depot as the largest naturally aligned blocks that tile
/// them. Anything under a page is lost (the cursor only ever moves by
/// whole pages, so there is none).
fn give_padding(from: usize, to: usize) {
    let mut at = from.next_multiple_of(PAGE);
    while at < to {
        // The largest power of two that `at` is aligned to and that fits.
        let mut piece = 1usize << at.trailing_zeros().min(usize::BITS - 1);
        while at + piece > to {
            piece /= 2;
        }
        let piece = piece.min(sizeclass::MAX_SIZE);
        // Every power of two from a page to MAX_SIZE has one (unit test).
        let Some(c) = padding_class(piece) else {
            return;
        };
        pool::mark_carved(at, piece, c);
        // SAFETY: claimed, committed pool memory, ours alone; a chain of
        // one block of class `c` (its size is `piece`, aligned to it).
        unsafe {
            set_next(at, 0);
            depot::give_new(c, at, 1);
        }
        at += piece;
    }
}

/// The class whose blocks are `piece` bytes aligned to `piece` (a power of
/// two from a page to `MAX_SIZE`): the plain page class, or an aligned one.
fn padding_class(piece: usize) -> Option<usize> {
    if piece == PAGE {
        return sizeclass::exact(PAGE);
    }
    sizeclass::for_request(piece, piece).filter(|&c| sizeclass::size_of(c) == piece)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_whole_pages_of_whole_blocks() {
        for c in 0..sizeclass::COUNT {
            let (bytes, align) = span_of(c, sizeclass::chain_len(c));
            assert_eq!(bytes % PAGE, 0, "class {c}");
            assert!(bytes >= sizeclass::size_of(c));
            assert!(align.is_power_of_two() && align >= PAGE);
            if c >= PLAIN {
                assert_eq!(align, sizeclass::size_of(c));
            }
        }
    }

    #[test]
    fn every_padding_piece_has_a_class_of_its_size() {
        let mut piece = PAGE;
        while piece <= sizeclass::MAX_SIZE {
            let c = padding_class(piece).expect("a class");
            assert_eq!(sizeclass::size_of(c), piece);
            piece *= 2;
        }
    }
}
