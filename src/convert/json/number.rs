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
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return fail(
            if looks_numeric(text) {
                codes::TYPE_MISMATCH
            } else {
                codes::INVALID_VALUE
            },
            format!("{} is not an integer", quote(text)),
        );
    }
    let acc: i128 = if digits.len() <= 18 {
        // Under 10^18: cannot overflow a u64, and the range check below
        // covers every integer type; the usual case, without i128 steps.
        i128::from(
            digits
                .iter()
                .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')),
        )
    } else {
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
