//! Log-linear latency buckets in nanoseconds: exact below 4 ns, then four
//! buckets per power of two (each at most 25% wide, so a percentile read
//! from a bucket's bounds is within 25%). Bucket `BUCKETS - 1` also holds
//! everything longer (about 37 minutes and up).

pub const BUCKETS: usize = 160;
const SUB_BITS: u32 = 2;
const SUB: u64 = 1 << SUB_BITS;

/// The bucket holding `ns`.
#[inline]
pub const fn bucket_of(ns: u64) -> usize {
    if ns < SUB {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = (ns >> (exp - SUB_BITS)) & (SUB - 1);
    let i = (SUB as u32 * (exp - SUB_BITS + 1)) as u64 + sub;
    if i as usize >= BUCKETS {
        BUCKETS - 1
    } else {
        i as usize
    }
}

/// The smallest value in bucket `i`.
pub const fn bucket_lower(i: usize) -> u64 {
    if (i as u64) < SUB {
        return i as u64;
    }
    let exp = (i as u64 / SUB) as u32 + SUB_BITS - 1;
    let sub = i as u64 % SUB;
    (1u64 << exp) + (sub << (exp - SUB_BITS))
}

/// One past the largest value in bucket `i` (`u64::MAX` for the last).
pub const fn bucket_upper(i: usize) -> u64 {
    if i + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_lower(i + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_between_its_bucket_bounds() {
        let mut v = 0u64;
        while v < (1 << 40) {
            let i = bucket_of(v);
            assert!(bucket_lower(i) <= v && v < bucket_upper(i), "{v} in {i}");
            v = v * 17 / 16 + 1;
        }
        for i in 0..BUCKETS - 1 {
            assert_eq!(bucket_of(bucket_lower(i)), i);
            assert_eq!(bucket_of(bucket_upper(i) - 1), i);
            let width = bucket_upper(i) - bucket_lower(i);
            assert!(width * 4 <= bucket_lower(i).max(4), "bucket {i} too wide");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }
}

/// The [`crate::ScopeHistogram`] bucket holding `ns`: its power of two.
#[inline]
pub const fn scope_bucket_of(ns: u64) -> usize {
    let i = (63 - (ns | 1).leading_zeros()) as usize;
    if i >= crate::SCOPE_BUCKETS {
        crate::SCOPE_BUCKETS - 1
    } else {
        i
    }
}

/// The smallest value in scope bucket `i`.
pub const fn scope_bucket_lower(i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        1 << i
    }
}

/// One past the largest value in scope bucket `i` (`u64::MAX` for the last).
pub const fn scope_bucket_upper(i: usize) -> u64 {
    if i + 1 >= crate::SCOPE_BUCKETS {
        u64::MAX
    } else {
        1 << (i + 1)
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn scope_buckets_are_powers_of_two_and_cover_everything() {
        for i in 0..crate::SCOPE_BUCKETS {
            let (lo, hi) = (scope_bucket_lower(i), scope_bucket_upper(i));
            assert_eq!(scope_bucket_of(lo), i);
            assert_eq!(scope_bucket_of(hi - 1), i);
            if i + 1 < crate::SCOPE_BUCKETS {
                assert_eq!(scope_bucket_lower(i + 1), hi);
            }
        }
        assert_eq!(scope_bucket_of(0), 0);
        assert_eq!(scope_bucket_of(u64::MAX), crate::SCOPE_BUCKETS - 1);
    }
}
