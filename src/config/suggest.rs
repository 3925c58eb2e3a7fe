//! Where an error is and what was probably meant, for both config shapes.
//!
//! - [`Position`]: a line and column computed from a byte offset (TOML spans)
//!   or taken from serde_json.
//! - [`nearest`]: the valid name closest to a misspelt one by edit distance,
//!   offered only when it is close, so a suggestion is a likely fix rather
//!   than a guess.
//! - [`unknown_field`]: rewrites serde's "unknown field `x`, expected one of
//!   ..." (which lists every field of the table) into one suggestion.

/// A place in a config file: 1-based line, and 1-based column counted in
/// characters (what editors show), not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to its end, and to
    /// the start of a character if it falls inside one).
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Edit distance over characters (Levenshtein, with a swap of two adjacent
/// characters counted as one edit: the commonest typo), case-insensitive:
/// `Interval_Secs` and `interval_secs` are the same name to a reader.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    // Three rows of the dynamic-programming table: two back, one back, this one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (previous[j - 1] + cost)
                .min(previous[j] + 1)
                .min(row[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut previous, row);
    }
    previous[b.len()]
}

/// The candidate closest to `word`, if it is close: at most one edit per
/// three characters of `word` (at least one edit), so `intreval_secs` finds
/// `interval_secs` but `colour` finds nothing among the destination options.
/// Ties go to the first candidate, so the answer does not depend on hashing.
pub(super) fn nearest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let d = distance(word, candidate);
        if d <= limit && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Rewrites serde's unknown-field message (`unknown field `x`, expected one
/// of `a`, `b`, ...`, or `expected `a` or `b``) into `unknown field `x`: did
/// you mean `a`?`, or `unknown field `x` (see <reference>)` when no field is
/// close. Any other message is returned unchanged.
pub(super) fn unknown_field(message: &str, reference: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_owned();
    };
    let Some((field, expected)) = rest.split_once('`') else {
        return message.to_owned();
    };
    // The backticked names after "expected": odd pieces of a split on '`'.
    let names = expected.split('`').skip(1).step_by(2);
    match nearest(field, names) {
        Some(name) => format!("unknown field `{field}`: did you mean `{name}`?"),
        None => format!("unknown field `{field}` (see {reference})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let text = "a = 1\n\u{e9}t\u{e9} = 2\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 4), Position { line: 1, column: 5 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // After "été" (5 bytes, 3 characters).
        assert_eq!(Position::of(text, 11), Position { line: 2, column: 4 });
        // Inside a character, and past the end.
        assert_eq!(Position::of(text, 7), Position { line: 2, column: 1 });
        assert_eq!(Position::of(text, 999), Position { line: 3, column: 1 });
        assert_eq!(Position { line: 3, column: 7 }.to_string(), "3:7");
    }

    #[test]
    fn suggestions_only_when_close() {
        let options = ["size_bytes", "interval_secs"];
        for (typo, want) in [
            ("interval_sec", Some("interval_secs")),
            ("intreval_secs", Some("interval_secs")),
            ("szie_bytes", Some("size_bytes")),
            ("Interval_Secs", Some("interval_secs")),
            ("size_byte", Some("size_bytes")),
            ("size_mb", None),
            ("colour", None),
            ("x", None),
        ] {
            assert_eq!(nearest(typo, options), want, "{typo}");
        }
        // A swap is one edit: a short name still finds its match.
        assert_eq!(nearest("Tgas", ["Tags", "RoleARN"]), Some("Tags"));
        // The closest wins, not the first close one.
        assert_eq!(nearest("prefixx", ["prefixes", "prefix"]), Some("prefix"));
    }

    #[test]
    fn serde_unknown_field_messages_become_one_suggestion() {
        assert_eq!(
            unknown_field(
                "unknown field `BucketNme`, expected one of `RoleARN`, `BucketARN`, `Prefix`",
                "ref"
            ),
            "unknown field `BucketNme`: did you mean `BucketARN`?"
        );
        assert_eq!(
            unknown_field(
                "unknown field `size_mb`, expected `size_bytes` or `interval_secs`",
                "ref"
            ),
            "unknown field `size_mb` (see ref)"
        );
        assert_eq!(
            unknown_field("missing field `x`", "ref"),
            "missing field `x`"
        );
    }
}
