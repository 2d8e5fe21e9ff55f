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

use crate::base::sizeclass::{self, PAGE, PLAIN};
use crate::front::depot::{self, set_next};
use crate::pool;

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
    crate::base::counters::count(crate::base::counters::Event::NoreclaimCarve);
    Some((start, n))
}

/// One block of class `c` carved from the NOFAIL reserve's uncarved
/// share (`pool::claim_reserve`): the last resort of a NORECLAIM|NOFAIL
/// request. Its padding goes to the pool's stacks, as a carve's does.
pub fn carve_from_reserve(c: usize) -> Option<usize> {
    let (bytes, align) = span_of(c, 1);
    let (start, from) = pool::claim_reserve(bytes, align)?;
    give_padding(from, start);
    pool::mark_carved(start, bytes, c);
    crate::base::counters::count(crate::base::counters::Event::NoreclaimCarve);
    Some(start)
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

/// `memscope_prepare`: makes `count` blocks of class `c` ready on the
/// pool's stacks now, carved as a scoped thread would carve them (exact
/// sizes: stocking large blocks through jemalloc cost it up to twice their
/// size in extents, and a feasible prepare of 20 x 1 MiB was refused),
/// committing pool memory first if the headroom would not hold them, and
/// keeps at least that many ready from then on. Checks first that the
/// region can hold them at all: a request beyond it fails at once (it
/// once committed the whole 4 GiB maximum, and kept it, before failing).
/// Runs outside NORECLAIM (it may commit memory). True if the stock is
/// there; nothing is kept as a target otherwise.
pub fn prepare(c: usize, count: u64) -> bool {
    if !pool::is_ready() {
        return false;
    }
    let want = count.saturating_sub(depot::ready_blocks(c));
    let size = sizeclass::size_of(c);
    // Each span may be preceded by up to its alignment in padding (given
    // to the depot, but not to this class).
    let (span, align) = span_of(c, sizeclass::chain_len(c));
    let spans = want.div_ceil((span / size) as u64);
    let bytes = spans.saturating_mul((span + align - PAGE) as u64);
    // The pool's own headroom stays on top for everything else.
    let need = bytes.saturating_add((pool::high_watermark() / 4) as u64);
    if need > pool::room_to_grow() as u64 || !pool::ensure_headroom(need as usize) {
        return false;
    }
    let before = pool::self_carved_bytes();
    let mut stocked = true;
    while depot::ready_blocks(c) < count {
        let Some((first, n)) = carve(c) else {
            stocked = false;
            break;
        };
        // SAFETY: a chain of `n` new blocks of class `c`, ours.
        unsafe { give_new_in_chains(c, first, n) };
    }
    pool::discount_carved(pool::self_carved_bytes().saturating_sub(before));
    if stocked {
        depot::keep_prepared(c, count);
    }
    stocked
}

/// Gives a chain of `len` new blocks of class `c` to the depot in chains
/// of the class's length (a carved span of a small class holds several).
///
/// # Safety
/// The chain is made of free pool blocks of class `c`, new, the caller's.
pub unsafe fn give_new_in_chains(c: usize, mut first: usize, mut len: usize) {
    let chain = sizeclass::chain_len(c);
    while len > 0 {
        let n = chain.min(len);
        let mut last = first;
        for _ in 1..n {
            // SAFETY: the caller's chain.
            last = unsafe { depot::next_of(last) };
        }
        // SAFETY: as above; cut after `n` blocks.
        unsafe {
            let rest = depot::next_of(last);
            set_next(last, 0);
            depot::give_new(c, first, n);
            first = rest;
        }
        len -= n;
    }
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
