//! What the reader's tests share: a small valid segment to read, mutate
//! or forge values into.

#![allow(dead_code)]

use std::mem::{offset_of, size_of};

use memscope_abi::{self as abi, Header, Histogram, Slot};

pub const SLOTS: usize = 4;

/// A small valid segment: header, retired and overflow slots, two live
/// threads with some counts and samples.
pub fn valid_segment() -> Vec<u8> {
    let size = abi::HEADER_SIZE + SLOTS * abi::SLOT_SIZE;
    let mut b = vec![0u8; size];
    let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    put(&mut b, 0, &abi::MAGIC);
    put(
        &mut b,
        offset_of!(Header, byte_order),
        &abi::BYTE_ORDER_MARK.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, abi_major),
        &abi::ABI_MAJOR.to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, header_size),
        &(abi::HEADER_SIZE as u32).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, ready), &abi::READY.to_ne_bytes());
    put(
        &mut b,
        offset_of!(Header, segment_size),
        &(size as u64).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, pid), &4242u32.to_ne_bytes());
    put(
        &mut b,
        offset_of!(Header, slot_count),
        &(SLOTS as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, slot_size),
        &(abi::SLOT_SIZE as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, bucket_count),
        &(abi::BUCKETS as u32).to_ne_bytes(),
    );
    put(
        &mut b,
        offset_of!(Header, slots_offset),
        &(abi::HEADER_SIZE as u64).to_ne_bytes(),
    );
    put(&mut b, offset_of!(Header, sample_period), &64u64.to_ne_bytes());
    put(&mut b, offset_of!(Header, event_count), &19u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, timer_count), &4u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, cmdline_len), &9u32.to_ne_bytes());
    put(&mut b, offset_of!(Header, cmdline), b"daemon\0-x");
    for i in abi::SLOT_FIRST_THREAD..SLOTS {
        let s = abi::HEADER_SIZE + i * abi::SLOT_SIZE;
        put(&mut b, s + offset_of!(Slot, state), &abi::SLOT_LIVE.to_ne_bytes());
        put(&mut b, s + offset_of!(Slot, tid), &(100 + i as u32).to_ne_bytes());
        put(&mut b, s + offset_of!(Slot, ops), &1000u64.to_ne_bytes());
        let h = s + offset_of!(Slot, latency);
        put(&mut b, h + offset_of!(Histogram, count), &3u64.to_ne_bytes());
        put(&mut b, h + offset_of!(Histogram, max_ns), &900u64.to_ne_bytes());
        put(
            &mut b,
            h + offset_of!(Histogram, buckets) + 8 * abi::bucket_of(50),
            &2u64.to_ne_bytes(),
        );
        put(
            &mut b,
            h + offset_of!(Histogram, buckets) + 8 * abi::bucket_of(900),
            &1u64.to_ne_bytes(),
        );
    }
    assert!(size_of::<Slot>() == abi::SLOT_SIZE);
    b
}
