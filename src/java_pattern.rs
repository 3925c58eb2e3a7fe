//! The lexical layer of Java's date-time patterns, shared by the two places
//! that read them: Hive's `TimestampFormats` (Joda-Time patterns that parse
//! timestamps, [`crate::convert`]'s JSON reader) and the `!{timestamp:...}`
//! namespace of S3 prefixes (`java.time.DateTimeFormatter` patterns that
//! format them, [`crate::partition`]). Both quote alike: text between `'`
//! is literal, and `''` is one quote, outside or inside a quoted text; and
//! both take a run of one ASCII letter as one field. What a letter means, and
//! which are allowed, differs between the two, so each maps the pieces itself.

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A run of one ASCII letter (`yyyy`: `y` four times).
    Letters {
        /// The pattern letter.
        letter: char,
        /// How many times it repeats.
        count: usize,
    },
    /// Quoted text, quotes undone (`''` alone is a quote).
    Quoted(String),
    /// Any other character outside quotes (punctuation, spaces, non-ASCII).
    Other(char),
}

/// The pieces of `pattern`.
///
/// # Errors
/// A quote is opened and never closed.
pub fn pieces(pattern: &str) -> Result<Vec<Piece>, UnclosedQuote> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            let mut text = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                text.push('\'');
            } else {
                loop {
                    match chars.next() {
                        None => return Err(UnclosedQuote),
                        Some('\'') if chars.next_if_eq(&'\'').is_some() => text.push('\''),
                        Some('\'') => break,
                        Some(q) => text.push(q),
                    }
                }
            }
            out.push(Piece::Quoted(text));
        } else if c.is_ascii_alphabetic() {
            let mut count = 1;
            while chars.next_if_eq(&c).is_some() {
                count += 1;
            }
            out.push(Piece::Letters { letter: c, count });
        } else {
            out.push(Piece::Other(c));
        }
    }
    Ok(out)
}

/// A pattern opens a quote it never closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unclosed quote")]
pub struct UnclosedQuote;

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(letter: char, count: usize) -> Piece {
        Piece::Letters { letter, count }
    }

    #[test]
    fn letters_quotes_and_other_characters() {
        assert_eq!(
            pieces("yyyy-MM'T'HH 'o''clock' ''é").unwrap(),
            vec![
                letters('y', 4),
                Piece::Other('-'),
                letters('M', 2),
                Piece::Quoted("T".into()),
                letters('H', 2),
                Piece::Other(' '),
                Piece::Quoted("o'clock".into()),
                Piece::Other(' '),
                Piece::Quoted("'".into()),
                Piece::Other('é'),
            ]
        );
        assert_eq!(pieces("").unwrap(), vec![]);
        assert_eq!(pieces("''").unwrap(), vec![Piece::Quoted("'".into())]);
        assert_eq!(pieces("'a''").unwrap_err(), UnclosedQuote);
        assert_eq!(pieces("yyyy'").unwrap_err(), UnclosedQuote);
    }
}
