//! Dates and timestamps in JSON text, as Firehose's two deserializers read
//! them: OpenX's ISO 8601 forms and epoch numbers, Hive's `TimestampFormats`
//! (Joda-Time patterns, compiled once per schema) and its
//! `java.sql.Timestamp` fallback. Results are days or milliseconds since the
//! epoch, UTC, checked strictly against the calendar.
//!
//! Neighbours: the column builders in [`super`] call [`timestamp_from_text`],
//! [`timestamp_from_number`] and [`parse_date`]; schema discovery
//! ([`crate::convert::discover`]) asks [`is_timestamp_text`].

use super::number::{POW10, float_from_text, int_from_text, looks_numeric};
use super::{Opts, R, codes, fail, quote};
use crate::java_pattern::{self, Piece};

pub(super) const MILLIS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(super) fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A scanner over date/time text.
pub(super) struct Text<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Text<'_> {
    /// Reads `min..=max` digits.
    pub(super) fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.pos;
        let mut v: i64 = 0;
        while self.pos < self.s.len() && self.pos - start < max && self.s[self.pos].is_ascii_digit()
        {
            v = v * 10 + i64::from(self.s[self.pos] - b'0');
            self.pos += 1;
        }
        (self.pos - start >= min).then_some(v)
    }
    pub(super) fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn done(&self) -> bool {
        self.pos == self.s.len()
    }
    /// A UTC offset, as minutes east of UTC: `Z`, or `+HH:MM` / `-HH:MM`
    /// (the colon optional unless `colon` is set). Hours 0..=23 and minutes
    /// 0..=59, the range Joda-Time and `java.time` accept.
    pub(super) fn offset_minutes(&mut self, colon: bool) -> Option<i64> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let h = self.digits(2, 2)?;
        if !self.eat(b':') && colon {
            return None;
        }
        let m = self.digits(2, 2)?;
        (h <= 23 && m <= 59).then_some(sign * (h * 60 + m))
    }
    /// Optional `.f` with 1..=9 digits, as milliseconds (truncated).
    pub(super) fn fraction_millis(&mut self) -> Option<i64> {
        if !self.eat(b'.') {
            return Some(0);
        }
        let start = self.pos;
        let v = self.digits(1, 9)?;
        // Milliseconds are the first three digits (`.5` is 500 ms).
        Some(match self.pos - start {
            n @ 1..=3 => v * POW10[3 - n] as i64,
            n => v / POW10[n - 3] as i64,
        })
    }
}

pub(super) fn civil_millis(
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    ms: i64,
) -> Option<i64> {
    if !(1..=12).contains(&mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mo = mo as u32;
    if d < 1 || d as u32 > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d as u32);
    Some(days * MILLIS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1000 + ms)
}

/// What follows the time of day in [`parse_datetime`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Zone {
    /// Nothing: a UTC wall-clock time.
    Absent,
    /// `Z` or `±HH:MM`; the result is normalised to UTC.
    Required,
}

/// `yyyy-[M]M-[d]d`, followed by `sep`, `HH:mm:ss[.f]` and `zone`, as
/// UTC milliseconds.
pub(super) fn parse_datetime(text: &[u8], sep: u8, flexible: bool, zone: Zone) -> Option<i64> {
    let mut t = Text { s: text, pos: 0 };
    let [y, mo, d, h, mi, s] = match fixed_fields(text, sep) {
        Some(fields) => {
            t.pos = FIXED_LEN;
            fields
        }
        None => scanned_fields(&mut t, sep, flexible)?,
    };
    let ms = t.fraction_millis()?;
    let offset_min = match zone {
        Zone::Absent => 0,
        Zone::Required => t.offset_minutes(true)?,
    };
    if !t.done() {
        return None;
    }
    Some(civil_millis(y, mo, d, h, mi, s, ms)? - offset_min * 60_000)
}

/// Bytes of `yyyy-MM-dd HH:mm:ss`.
const FIXED_LEN: usize = 19;

/// The date and time fields at the start of `text` when it is spelled
/// `yyyy-MM-dd` `sep` `HH:mm:ss`, every field at its fixed place (the form
/// nearly every producer writes): read by index, where [`scanned_fields`]
/// reads the same text field by field (one digit at a time, each loop
/// bounded twice); the timestamp column had been 4% of `sluice convert`'s
/// instructions. `None` for any other spelling, which `scanned_fields` reads
/// or refuses.
#[inline]
fn fixed_fields(text: &[u8], sep: u8) -> Option<[i64; 6]> {
    let s: &[u8; FIXED_LEN] = text.get(..FIXED_LEN)?.try_into().ok()?;
    if s[4] != b'-' || s[7] != b'-' || s[10] != sep || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let digit = |i: usize| {
        let d = s[i].wrapping_sub(b'0');
        (d <= 9).then_some(i64::from(d))
    };
    let two = |i: usize| Some(digit(i)? * 10 + digit(i + 1)?);
    Some([
        two(0)? * 100 + two(2)?,
        two(5)?,
        two(8)?,
        two(11)?,
        two(14)?,
        two(17)?,
    ])
}

/// `yyyy-[M]M-[d]d` (two-digit month and day unless `flexible`), `sep`,
/// `HH:mm:ss`, read field by field from the start of `t`.
fn scanned_fields(t: &mut Text<'_>, sep: u8, flexible: bool) -> Option<[i64; 6]> {
    let (dmin, dmax) = if flexible { (1, 2) } else { (2, 2) };
    let y = t.digits(4, 4)?;
    t.eat(b'-').then_some(())?;
    let mo = t.digits(dmin, dmax)?;
    t.eat(b'-').then_some(())?;
    let d = t.digits(dmin, dmax)?;
    t.eat(sep).then_some(())?;
    let h = t.digits(2, 2)?;
    t.eat(b':').then_some(())?;
    let mi = t.digits(2, 2)?;
    t.eat(b':').then_some(())?;
    let s = t.digits(2, 2)?;
    Some([y, mo, d, h, mi, s])
}

/// The OpenX timestamp strings other than epoch numbers:
/// `yyyy-MM-dd'T'HH:mm:ss[.f]` with `Z` or `±HH:MM`, and
/// `yyyy-[M]M-[d]d HH:mm:ss[.f]`. The one rule for both conversion and
/// schema discovery ([`is_timestamp_text`]), so discovery never infers a
/// `timestamp` column that conversion then refuses.
pub(super) fn openx_datetime(text: &[u8]) -> Option<i64> {
    parse_datetime(text, b'T', false, Zone::Required)
        .or_else(|| parse_datetime(text, b' ', true, Zone::Absent))
}

pub(super) fn parse_date(text: &[u8]) -> R<i32> {
    let mut t = Text { s: text, pos: 0 };
    let parsed = (|| {
        let y = t.digits(4, 4)?;
        t.eat(b'-').then_some(())?;
        let mo = t.digits(1, 2)?;
        t.eat(b'-').then_some(())?;
        let d = t.digits(1, 2)?;
        if !t.done() || !(1..=12).contains(&mo) || d < 1 || d as u32 > days_in_month(y, mo as u32) {
            return None;
        }
        Some(days_from_civil(y, mo as u32, d as u32) as i32)
    })();
    parsed.map_or_else(
        || {
            fail(
                codes::INVALID_TIMESTAMP,
                format!("{} is not a date (yyyy-MM-dd)", quote(text)),
            )
        },
        Ok,
    )
}

/// Epoch seconds or milliseconds by magnitude (see the module docs).
pub(super) fn epoch_integer(v: i128) -> Option<i64> {
    if v.abs() >= 100_000_000_000 {
        i64::try_from(v).ok()
    } else {
        i64::try_from(v * 1000).ok()
    }
}

pub(super) fn openx_number(text: &[u8]) -> Option<i64> {
    if text.iter().all(|c| c.is_ascii_digit() || *c == b'-') {
        let v = int_from_text(text, i64::MIN as i128, i64::MAX as i128).ok()?;
        epoch_integer(v)
    } else {
        let secs = float_from_text(text).ok()?;
        let millis = (secs * 1000.0).floor();
        (millis.is_finite() && millis.abs() < 9.2e18).then_some(millis as i64)
    }
}

pub(super) fn timestamp_from_number(text: &[u8], o: &Opts) -> R<i64> {
    let parsed = if o.openx {
        openx_number(text)
    } else {
        hive_timestamp(text, o)
    };
    parsed.map_or_else(|| bad_timestamp(text, o), Ok)
}

pub(super) fn timestamp_from_text(text: &[u8], o: &Opts) -> R<i64> {
    let parsed = if o.openx {
        openx_datetime(text).or_else(|| looks_numeric(text).then(|| openx_number(text)).flatten())
    } else {
        hive_timestamp(text, o)
    };
    parsed.map_or_else(|| bad_timestamp(text, o), Ok)
}

pub(super) fn bad_timestamp<T>(text: &[u8], o: &Opts) -> R<T> {
    let forms = if o.openx {
        "yyyy-MM-dd'T'HH:mm:ss[.S] with Z or ±HH:MM, yyyy-[M]M-[d]d HH:mm:ss[.S], or epoch seconds/millis"
    } else {
        "one of TimestampFormats or yyyy-[M]M-[d]d HH:mm:ss[.S]"
    };
    fail(
        codes::INVALID_TIMESTAMP,
        format!("{} is not a timestamp ({forms})", quote(text)),
    )
}

pub(super) fn hive_timestamp(text: &[u8], o: &Opts) -> Option<i64> {
    for format in &o.hive_formats {
        let parsed = match format {
            HiveFormat::Millis => int_from_text(text, i64::MIN as i128, i64::MAX as i128)
                .ok()
                .map(|v| v as i64),
            HiveFormat::Pattern(tokens) => parse_joda(tokens, text),
        };
        if parsed.is_some() {
            return parsed;
        }
    }
    parse_datetime(text, b' ', true, Zone::Absent)
}

/// One compiled entry of Hive's `TimestampFormats`.
#[derive(Debug, Clone)]
pub(super) enum HiveFormat {
    Millis,
    Pattern(Vec<Joda>),
}

/// A Joda-Time pattern element.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Joda {
    Year(usize),
    Month(usize),
    MonthName(usize),
    Day(usize),
    Hour24(usize),
    Hour12(usize),
    Minute(usize),
    Second(usize),
    Fraction(usize),
    AmPm,
    Zone,
    Literal(Vec<u8>),
}

impl Joda {
    pub(super) fn numeric(&self) -> bool {
        !matches!(
            self,
            Joda::Literal(_) | Joda::AmPm | Joda::Zone | Joda::MonthName(_)
        )
    }
}

pub(super) fn compile_joda(pattern: &str) -> Result<Vec<Joda>, String> {
    let pieces = java_pattern::pieces(pattern).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let (c, n) = match piece {
            Piece::Quoted(text) => {
                out.push(Joda::Literal(text.into_bytes()));
                continue;
            }
            Piece::Other(c) => {
                out.push(Joda::Literal(c.to_string().into_bytes()));
                continue;
            }
            Piece::Letters { letter, count } => (letter, count),
        };
        out.push(match c {
            'y' | 'Y' | 'u' => Joda::Year(n),
            'M' if n >= 3 => Joda::MonthName(n),
            'M' => Joda::Month(n),
            'd' => Joda::Day(n),
            'H' => Joda::Hour24(n),
            'h' => Joda::Hour12(n),
            'm' => Joda::Minute(n),
            's' => Joda::Second(n),
            'S' => Joda::Fraction(n),
            'a' => Joda::AmPm,
            'Z' => Joda::Zone,
            c => return Err(format!("pattern letter `{c}` is not supported")),
        });
    }
    Ok(out)
}

pub(super) fn parse_joda(tokens: &[Joda], text: &[u8]) -> Option<i64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let mut t = Text { s: text, pos: 0 };
    let (mut y, mut mo, mut d, mut h, mut mi, mut s, mut ms) = (1970, 1, 1, 0, 0, 0, 0);
    let mut pm: Option<bool> = None;
    let mut hour12 = false;
    let mut offset_min = 0i64;
    for (i, tok) in tokens.iter().enumerate() {
        // Next to another number field, a field takes exactly its width.
        let fixed = tokens.get(i + 1).is_some_and(Joda::numeric);
        let width = |n: usize, max: usize| if fixed { (n, n) } else { (1, max.max(n)) };
        match tok {
            Joda::Year(n) => {
                let (a, b) = if fixed { (*n, *n) } else { (1, 9) };
                y = t.digits(a, b)?;
            }
            Joda::Month(n) => {
                let (a, b) = width(*n, 2);
                mo = t.digits(a, b)?;
            }
            Joda::MonthName(_) => {
                let rest = &t.s[t.pos..];
                let idx = MONTHS
                    .iter()
                    .position(|m| rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(m))?;
                mo = idx as i64 + 1;
                t.pos += 3;
                // Full names ("September") are accepted too.
                while t.pos < t.s.len() && t.s[t.pos].is_ascii_alphabetic() {
                    t.pos += 1;
                }
            }
            Joda::Day(n) => {
                let (a, b) = width(*n, 2);
                d = t.digits(a, b)?;
            }
            Joda::Hour24(n) => {
                let (a, b) = width(*n, 2);
                h = t.digits(a, b)?;
            }
            Joda::Hour12(n) => {
                let (a, b) = width(*n, 2);
                h = t.digits(a, b)?;
                hour12 = true;
            }
            Joda::Minute(n) => {
                let (a, b) = width(*n, 2);
                mi = t.digits(a, b)?;
            }
            Joda::Second(n) => {
                let (a, b) = width(*n, 2);
                s = t.digits(a, b)?;
            }
            Joda::Fraction(n) => {
                let start = t.pos;
                let (a, b) = if fixed { (*n, *n) } else { (1, 9) };
                let v = t.digits(a, b)?;
                let digits = (t.pos - start) as u32;
                ms = v * 10i64.pow(9 - digits) / 1_000_000;
            }
            Joda::AmPm => {
                let rest = &t.s[t.pos..];
                if rest.len() < 2 {
                    return None;
                }
                pm = Some(match &rest[..2] {
                    r if r.eq_ignore_ascii_case(b"am") => false,
                    r if r.eq_ignore_ascii_case(b"pm") => true,
                    _ => return None,
                });
                t.pos += 2;
            }
            Joda::Zone => offset_min = t.offset_minutes(false)?,
            Joda::Literal(lit) => {
                if !t.s[t.pos..].starts_with(lit) {
                    return None;
                }
                t.pos += lit.len();
            }
        }
    }
    if !t.done() {
        return None;
    }
    if hour12 {
        if !(1..=12).contains(&h) {
            return None;
        }
        h %= 12;
        if pm == Some(true) {
            h += 12;
        }
    }
    Some(civil_millis(y, mo, d, h, mi, s, ms)? - offset_min * 60_000)
}

/// Whether schema discovery may infer `timestamp` for the JSON string
/// `text`: exactly when the OpenX deserializer reads it as a date-time
/// ([`openx_datetime`]). Digit strings are left to be strings: OpenX would
/// read them as epoch times, but nothing says they are times.
pub(crate) fn is_timestamp_text(text: &[u8]) -> bool {
    openx_datetime(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::{FIXED_LEN, Text, fixed_fields, scanned_fields};

    /// Where the fixed-place read accepts a text, the field-by-field read
    /// accepts it too, with the same fields and ending at the same byte:
    /// valid date-times with up to two bytes changed (digits, separators,
    /// other bytes), whole or cut to any length, for both separators and both
    /// month/day widths.
    #[test]
    fn fixed_place_fields_are_the_scanned_ones() {
        let mut next = super::super::tests::below(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"0123456789-: T/.Z+\xc3";
        let (mut fixed, mut tried) = (0, 0);
        for _ in 0..20_000 {
            let mut text = b"2024-02-29T23:59:59.123Z".to_vec();
            if next(2) == 0 {
                text[10] = b' ';
            }
            for _ in 0..next(3) {
                text[next(FIXED_LEN + 1)] = alphabet[next(alphabet.len())];
            }
            if next(4) == 0 {
                text.truncate(next(text.len() + 1));
            }
            for sep in [b'T', b' '] {
                for flexible in [false, true] {
                    tried += 1;
                    let Some(fields) = fixed_fields(&text, sep) else {
                        continue;
                    };
                    fixed += 1;
                    let mut t = Text { s: &text, pos: 0 };
                    let scanned = scanned_fields(&mut t, sep, flexible);
                    let shown = String::from_utf8_lossy(&text);
                    assert_eq!(
                        Some(fields),
                        scanned,
                        "{shown} sep {sep} flexible {flexible}"
                    );
                    assert_eq!(t.pos, FIXED_LEN, "{shown}");
                }
            }
        }
        // Both kinds of text were generated.
        assert!(
            fixed > tried / 10 && fixed < tried * 9 / 10,
            "{fixed} of {tried}"
        );
    }
}
