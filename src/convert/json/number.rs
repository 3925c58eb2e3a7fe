//! Numbers in JSON text: integers within a column's range, doubles, and
//! decimals at a column's scale, each from the bytes the scanner
//! ([`super::scan::Parser::number`]) or a quoted OpenX string gave.
//!
//! Neighbours: the column builders in [`super`] call these with a value's text
//! and store the result; the failures are [`super::Fail`]s with Firehose's
//! error codes ([`super::codes`]).

use super::{R, codes, fail, quote};

pub(super) fn int_from_text(text: &[u8], min: i128, max: i128) -> R<i128> {
    let (neg, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let not_integer = || {
        fail(
            if looks_numeric(text) {
                codes::TYPE_MISMATCH
            } else {
                codes::INVALID_VALUE
            },
            format!("{} is not an integer", quote(text)),
        )
    };
    if digits.is_empty() {
        return not_integer();
    }
    let acc: i128 = if digits.len() <= 18 {
        // Under 10^18: cannot overflow a u64, and the range check below
        // covers every integer type; the usual case, checked and summed in
        // one pass, eight digits at a time.
        match digits_value(digits, 0) {
            Some(v) => i128::from(v),
            None => return not_integer(),
        }
    } else {
        if !digits.iter().all(u8::is_ascii_digit) {
            return not_integer();
        }
        let mut acc: i128 = 0;
        for &d in digits {
            acc = acc * 10 + i128::from(d - b'0');
            if acc > max + 1 {
                return fail(
                    codes::OUT_OF_RANGE,
                    format!("{} is out of range", quote(text)),
                );
            }
        }
        acc
    };
    let v = if neg { -acc } else { acc };
    if v < min || v > max {
        return fail(
            codes::OUT_OF_RANGE,
            format!("{} is out of range", quote(text)),
        );
    }
    Ok(v)
}

pub(super) fn looks_numeric(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
}

pub(super) fn float_from_text(text: &[u8]) -> R<f64> {
    if let Some(x) = exact_float(text) {
        return Ok(x);
    }
    let parsed = std::str::from_utf8(text).ok().and_then(|s| match s {
        "NaN" => Some(f64::NAN),
        "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ if looks_numeric(text) => s.parse::<f64>().ok(),
        _ => None,
    });
    match parsed {
        Some(x) if x.is_infinite() && looks_numeric(text) => fail(
            codes::OUT_OF_RANGE,
            format!("{} is out of range for double", quote(text)),
        ),
        Some(x) => Ok(x),
        None => fail(
            codes::INVALID_VALUE,
            format!("{} is not a number", quote(text)),
        ),
    }
}

/// 10^0 ..= 10^19 as doubles (exact: every power up to 10^22 is).
const POW10_F64: [f64; 20] = {
    let mut table = [1.0; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10.0;
        i += 1;
    }
    table
};

/// `digits[.digits]` split at its point (the fraction empty without one).
fn split_point(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&c| c == b'.') {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[]),
    }
}

/// A plain `[-]digits[.digits]` of at most 19 digits whose value, read as
/// one integer, is at most 2^53: that integer and the power of ten are exact
/// doubles, so one division gives the correctly rounded value, the same double
/// std's parser gives (Clinger's fast path). `None` for anything else
/// (exponents, signs, more digits), which std then parses.
///
/// Done here rather than left to std, whose parser first needs the text as
/// `str` (a UTF-8 check per value): 4.4% of `convert`'s instructions went to
/// the clickstream's one double column.
fn exact_float(text: &[u8]) -> Option<f64> {
    let (neg, body) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let (int, fraction) = split_point(body);
    let digits = int.len() + fraction.len();
    // At most 19 digits: their value cannot overflow a u64.
    if digits == 0 || digits > 19 {
        return None;
    }
    let m = digits_value(fraction, digits_value(int, 0)?)?;
    if m > 1 << 53 {
        return None;
    }
    let x = m as f64 / POW10_F64[fraction.len()];
    Some(if neg { -x } else { x })
}

/// `acc` followed by the decimal digits `s` (`None` if any byte is not a
/// digit); eight digits at a time with [`eight_digits`]. The caller keeps the
/// result under 2^64.
fn digits_value(mut s: &[u8], mut acc: u64) -> Option<u64> {
    while let Some((chunk, rest)) = s.split_first_chunk::<8>() {
        acc = acc * 100_000_000 + eight_digits(u64::from_le_bytes(*chunk))?;
        s = rest;
    }
    for &c in s {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        acc = acc * 10 + u64::from(d);
    }
    Some(acc)
}

/// Eight ASCII digits loaded little-endian (the first digit in the low byte)
/// as their value, or `None` if one is not a digit. The check: a byte is a
/// digit when its high nibble is 3 and adding 6 keeps it 3. The value: pairs,
/// then quads, then all eight are combined by one multiply each (the pair
/// step multiplies by 10 * 2^8 + 1, and so on), as in Lemire's SWAR parse.
fn eight_digits(v: u64) -> Option<u64> {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    if (v & HIGH) | ((v.wrapping_add(0x0606_0606_0606_0606) & HIGH) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = ((v & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(10 * 256 + 1)) >> 8;
    let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 * 65_536 + 1)) >> 16;
    Some(((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 * (1 << 32) + 1)) >> 32)
}

/// 10^0 ..= 10^38: a decimal's limit looked up, not computed per value.
pub(super) const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The unscaled value at `scale` of a plain `digits[.digits]` (no sign, no
/// exponent), rounded half-up on the first dropped digit as
/// [`parse_decimal`] does, when the result has at most 18 digits: then it
/// fits a `u64`, summed eight digits at a time ([`digits_value`]) instead of
/// one `i128` step per digit. `None` for anything else, which the general
/// path reads (or refuses).
fn plain_decimal(text: &[u8], scale: u8) -> Option<u64> {
    let scale = usize::from(scale);
    let (int, fraction) = split_point(text);
    // The result has int.len() + scale digits: under 10^18 at 18 of them.
    if (int.is_empty() && fraction.is_empty()) || int.len() + scale > 18 {
        return None;
    }
    let (kept, dropped) = fraction.split_at(fraction.len().min(scale));
    if !dropped.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let acc = digits_value(kept, digits_value(int, 0)?)?;
    // Only the first dropped digit rounds.
    let round_up = dropped.first().is_some_and(|&d| d >= b'5');
    Some(acc * 10u64.pow((scale - kept.len()) as u32) + u64::from(round_up))
}

/// Parses a decimal literal (`-12.345e2`) into an unscaled `i128` at
/// `scale`, rounding extra fraction digits half-up (away from zero).
pub(super) fn parse_decimal(text: &[u8], precision: u8, scale: u8) -> R<i128> {
    let bad = || {
        fail(
            codes::INVALID_VALUE,
            format!("{} is not a decimal number", quote(text)),
        )
    };
    let t = text.trim_ascii();
    let (neg, rest) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if let Some(acc) = plain_decimal(rest, scale) {
        return if i128::from(acc) >= POW10[usize::from(precision)] {
            fail(
                codes::OUT_OF_RANGE,
                format!("{} does not fit decimal({precision},{scale})", quote(text)),
            )
        } else {
            Ok(if neg {
                -i128::from(acc)
            } else {
                i128::from(acc)
            })
        };
    }
    let (mantissa, exp) = match rest.iter().position(|&c| c == b'e' || c == b'E') {
        Some(i) => {
            let e = &rest[i + 1..];
            let (eneg, edigits) = match e.first() {
                Some(b'-') => (true, &e[1..]),
                Some(b'+') => (false, &e[1..]),
                _ => (false, e),
            };
            if edigits.is_empty() || !edigits.iter().all(u8::is_ascii_digit) {
                return bad();
            }
            let mut v: i64 = 0;
            for &d in edigits {
                v = (v * 10 + i64::from(d - b'0')).min(1_000_000);
            }
            (&rest[..i], if eneg { -v } else { v })
        }
        None => (rest, 0),
    };
    let dot = mantissa.iter().position(|&c| c == b'.');
    let int_len = dot.unwrap_or(mantissa.len()) as i64;
    let digit_count = mantissa.len() - usize::from(dot.is_some());
    if digit_count == 0
        || !mantissa
            .iter()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || Some(i) == dot)
    {
        return bad();
    }
    // Digits at indices < keep are at or above 10^-scale.
    let keep = int_len + exp + i64::from(scale);
    let out_of_range = || {
        fail(
            codes::OUT_OF_RANGE,
            format!("{} does not fit decimal({precision},{scale})", quote(text)),
        )
    };
    let limit = POW10[usize::from(precision)];
    let mut acc: i128 = 0;
    let mut round_up = false;
    let mut index = 0i64;
    for &c in mantissa {
        if c == b'.' {
            continue;
        }
        let d = i128::from(c - b'0');
        if index < keep {
            // Checked: at precision 38, ten times a value under the limit can
            // pass i128::MAX (it wrapped in release builds, so a value too
            // large for the column could be stored as another one).
            acc = match acc.checked_mul(10).and_then(|a| a.checked_add(d)) {
                Some(a) if a < limit => a,
                _ => return out_of_range(),
            };
        } else if index == keep {
            round_up = d >= 5;
        }
        index += 1;
    }
    if index < keep {
        for _ in index..keep {
            acc = match acc.checked_mul(10) {
                Some(a) if a < limit => a,
                _ => return out_of_range(),
            };
        }
    }
    if round_up {
        acc += 1;
        if acc >= limit {
            return out_of_range();
        }
    }
    Ok(if neg { -acc } else { acc })
}

#[cfg(test)]
mod tests {
    use super::eight_digits;

    /// Every byte value at every place of eight: a digit gives the number the
    /// eight digits spell, anything else (`/` and `:` next to the digits, bytes
    /// of 0x80 and above) `None`.
    #[test]
    fn eight_digits_reads_exactly_eight_digits() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut chunk = *b"31415926";
                chunk[at] = b;
                let want = std::str::from_utf8(&chunk)
                    .ok()
                    .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
                    .map(|s| s.parse::<u64>().unwrap());
                assert_eq!(eight_digits(u64::from_le_bytes(chunk)), want, "{chunk:?}");
            }
        }
    }
}
