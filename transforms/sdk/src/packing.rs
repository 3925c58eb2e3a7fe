//! The record-id and byte helpers of `transform-packed` (see `wasm`), kept
//! apart from the bindings so they are compiled, and tested, natively too: a
//! wrong answer here would pass a changed record off as unchanged.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

/// `i` in decimal, without the formatting machinery (a call per record).
pub(crate) fn decimal(mut i: usize) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (i % 10) as u8;
        i /= 10;
        if i == 0 {
            break;
        }
    }
    digits[at..].iter().map(|&d| d as char).collect()
}

/// `a == b`, eight bytes at a time: on wasm32 the slice comparison calls a
/// byte-at-a-time `memcmp`, and this runs once per `ok` record. It reads every
/// byte rather than stopping at the first difference: almost every comparison
/// is of equal bytes (most records come back unchanged), and without the exit
/// the loop is a plain fold (about a third less guest time in perf than the
/// early-exit loop).
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = a8.remainder() == b8.remainder();
    let word = |x: &[u8]| u64::from_ne_bytes(x.try_into().unwrap());
    tails_equal && a8.zip(b8).fold(0, |diff, (x, y)| diff | (word(x) ^ word(y))) == 0
}

/// The input index an answer's id names: a canonical decimal (no sign, no
/// leading zero) below `n`. One pass over the bytes; it runs once per answer.
pub(crate) fn index_of(id: &str, n: usize) -> Option<usize> {
    let digits = id.as_bytes();
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut i = 0usize;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        i = i.checked_mul(10)?.checked_add(usize::from(c - b'0'))?;
    }
    (i < n).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_ids_round_trip_through_index_of() {
        for i in [0, 1, 9, 10, 499, 500, 123_456_789, usize::MAX] {
            assert_eq!(decimal(i), i.to_string());
            assert_eq!(
                index_of(&decimal(i), usize::MAX),
                (i < usize::MAX).then_some(i)
            );
        }
        for bad in ["", "01", "00", "+1", "-1", "1 ", " 1", "x", "5", "1a", "99999999999999999999999"] {
            assert_eq!(index_of(bad, 5), None, "{bad:?}");
        }
    }

    #[test]
    fn same_bytes_sees_every_difference() {
        let a: Vec<u8> = (0..37).collect();
        for len in 0..a.len() {
            assert!(same_bytes(&a[..len], &a[..len]));
            for at in 0..len {
                let mut b = a[..len].to_vec();
                b[at] ^= 0x80;
                assert!(!same_bytes(&a[..len], &b), "len {len}, byte {at}");
            }
        }
        assert!(!same_bytes(b"ab", b"abc"));
    }
}
