//! `access-log`: turns Apache/nginx "combined" access-log lines into JSON
//! objects, one per record, ready for format conversion or queries:
//!
//! ```text
//! 203.0.113.9 - ann [10/Oct/2024:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 2326 "https://ref/" "curl/8.5"
//! ```
//! becomes `{"agent":"curl/8.5","bytes":2326,"ip":"203.0.113.9","method":"GET",
//! "path":"/a?b=1","protocol":"HTTP/1.1","referrer":"https://ref/","status":200,
//! "time":"2024-10-10T20:55:36Z","user":"ann"}` (a `-` user, referrer or agent
//! becomes `null`; a `-` byte count, which Apache writes for an empty body, 0).
//!
//! The "common" format (no referrer and agent) is accepted too, with those two
//! `null`. Anything else fails that record to `processing-failed` with what was
//! wrong and where, and a batch with such lines logs one warning. No options.
//! Written by hand rather than with a regex crate to keep the component small;
//! the format is simple enough.

use serde_json::{Value, json};
use sluice_transform::{
    BatchContext, InputRecord, Level, Mapped, Outcome, OutputRecord, Transform, config, log,
    map_records,
};

pub struct AccessLog;

impl Transform for AccessLog {
    fn init(cfg: &[(String, String)]) -> Result<Self, String> {
        config::reject_unknown(cfg, &[])?;
        Ok(AccessLog)
    }

    fn transform(&mut self, ctx: &BatchContext, records: Vec<InputRecord>) -> Vec<OutputRecord> {
        let out = map_records(records, |r| {
            let line =
                std::str::from_utf8(&r.data).map_err(|e| format!("line is not UTF-8: {e}"))?;
            let line = line.trim_end_matches(['\r', '\n']);
            let entry = parse(line).map_err(|e| format!("not a combined access-log line: {e}"))?;
            let mut out =
                serde_json::to_vec(&entry).map_err(|e| format!("cannot serialise: {e}"))?;
            if r.data.ends_with(b"\n") {
                out.push(b'\n');
            }
            Ok(Mapped::ok(out))
        });
        // One line per batch, not per record: the messages themselves go to the
        // processing-failed output with each record.
        let failed = out
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::ProcessingFailed(_)))
            .count();
        if failed > 0 {
            log(
                Level::Warn,
                &format!(
                    "{}: {failed} of {} lines unparsable",
                    ctx.invocation_id,
                    out.len()
                ),
            );
        }
        out
    }
}

sluice_transform::export!(AccessLog);

/// A cursor over one line; each method consumes one field and the blank after it.
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Fields<'a> {
    /// A field up to the next space.
    fn word(&mut self, what: &str) -> Result<&'a str, String> {
        let s = self.rest;
        if s.is_empty() {
            return Err(format!("line ends before the {what}"));
        }
        let end = s.find(' ').unwrap_or(s.len());
        self.rest = s[end..].trim_start_matches(' ');
        Ok(&s[..end])
    }

    /// A field between `open` and `close`; a backslash escapes the next
    /// character (Apache writes `\"` inside quoted fields).
    fn delimited(&mut self, open: char, close: char, what: &str) -> Result<String, String> {
        let Some(s) = self.rest.strip_prefix(open) else {
            return Err(format!("the {what} does not start with {open}"));
        };
        let mut out = String::new();
        let mut chars = s.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    // Other escapes (nginx's \x22 and the like) stay as written.
                    Some((_, e)) => {
                        out.push('\\');
                        out.push(e);
                    }
                    None => break,
                },
                c if c == close => {
                    self.rest = s[i + c.len_utf8()..].trim_start_matches(' ');
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(format!("the {what} has no closing {close}"))
    }
}

fn dash_is_null(s: String) -> Value {
    if s == "-" {
        Value::Null
    } else {
        Value::String(s)
    }
}

fn parse(line: &str) -> Result<Value, String> {
    let mut f = Fields { rest: line };
    let ip = f.word("client address")?;
    let _ident = f.word("identity")?;
    let user = f.word("user")?.to_string();
    let time = rfc3339(&f.delimited('[', ']', "time")?)?;
    let request = f.delimited('"', '"', "request")?;
    let mut parts = request.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(path), protocol, None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("request {request:?} is not METHOD PATH PROTOCOL"));
    };
    let status_text = f.word("status")?;
    let status: u16 = status_text
        .parse()
        .ok()
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| format!("status {status_text:?} is not a 3-digit number"))?;
    let bytes_text = f.word("byte count")?;
    let bytes: u64 = match bytes_text {
        "-" => 0,
        b => b
            .parse()
            .map_err(|_| format!("byte count {b:?} is not a number"))?,
    };
    // Common format ends here; combined adds the quoted referrer and agent.
    let (referrer, agent) = if f.rest.is_empty() {
        (Value::Null, Value::Null)
    } else {
        let referrer = dash_is_null(f.delimited('"', '"', "referrer")?);
        let agent = dash_is_null(f.delimited('"', '"', "user agent")?);
        (referrer, agent)
    };
    Ok(json!({
        "ip": ip,
        "user": dash_is_null(user),
        "time": time,
        "method": method,
        "path": path,
        "protocol": protocol,
        "status": status,
        "bytes": bytes,
        "referrer": referrer,
        "agent": agent,
    }))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `10/Oct/2024:13:55:36 -0700` (Apache's `%t`, nginx's `$time_local`) as
/// RFC 3339 in UTC: `2024-10-10T20:55:36Z`.
fn rfc3339(t: &str) -> Result<String, String> {
    let bad = || format!("time {t:?} is not DD/Mon/YYYY:HH:MM:SS +ZZZZ");
    // ASCII only, so the fixed byte offsets below are char boundaries.
    if !t.is_ascii() {
        return Err(bad());
    }
    let (local, zone) = t.split_once(' ').ok_or_else(bad)?;
    let b = local.as_bytes();
    if b.len() != 20
        || b[2] != b'/'
        || b[6] != b'/'
        || b[11] != b':'
        || b[14] != b':'
        || b[17] != b':'
    {
        return Err(bad());
    }
    let num = |s: &str| -> Result<i64, String> {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let day = num(&local[0..2])?;
    let month = MONTHS
        .iter()
        .position(|m| *m == &local[3..6])
        .ok_or_else(bad)? as i64
        + 1;
    let year = num(&local[7..11])?;
    let (hour, min, sec) = (
        num(&local[12..14])?,
        num(&local[15..17])?,
        num(&local[18..20])?,
    );
    // 60 allows a leap second, as RFC 3339 does.
    if !(1..=days_in_month(year, month)).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return Err(bad());
    }
    let zb = zone.as_bytes();
    if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') {
        return Err(bad());
    }
    let (zh, zm) = (num(&zone[1..3])?, num(&zone[3..5])?);
    if zm > 59 {
        return Err(bad());
    }
    let offset = (zh * 3600 + zm * 60) * if zb[0] == b'-' { -1 } else { 1 };
    let utc = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset;
    let (days, secs) = (utc.div_euclid(86_400), utc.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    ))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Days since 1970-01-01 of a proleptic Gregorian date and back: Howard
// Hinnant's civil-date algorithms, which need no tables and no date crate.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transform::testing::{batch, check_answer, context};

    fn run(lines: &[&[u8]]) -> Vec<OutputRecord> {
        let input = batch(lines);
        let out = AccessLog::init(&[])
            .unwrap()
            .transform(&context(), input.clone());
        check_answer(&input, &out).unwrap();
        out
    }

    fn failed(o: &OutputRecord) -> &str {
        match &o.outcome {
            Outcome::ProcessingFailed(m) => m,
            other => panic!("expected processing-failed, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_combined_line() {
        let out = run(&[
            b"203.0.113.9 - ann [10/Oct/2024:13:55:36 -0700] \"GET /a?b=1 HTTP/1.1\" 200 2326 \"https://ref/\" \"Mozilla/5.0 (X11; \\\"q\\\")\"\n",
        ]);
        assert_eq!(out[0].outcome, Outcome::Ok);
        assert!(out[0].data.ends_with(b"}\n"));
        let v: Value = serde_json::from_slice(&out[0].data).unwrap();
        assert_eq!(
            v,
            json!({"ip":"203.0.113.9","user":"ann","time":"2024-10-10T20:55:36Z","method":"GET",
                   "path":"/a?b=1","protocol":"HTTP/1.1","status":200,"bytes":2326,
                   "referrer":"https://ref/","agent":"Mozilla/5.0 (X11; \"q\")"})
        );
    }

    #[test]
    fn dashes_and_common_format() {
        let out = run(&[
            b"::1 - - [01/Jan/2024:00:30:00 +0100] \"HEAD / HTTP/1.0\" 304 - \"-\" \"-\"",
            b"10.1.2.3 - - [29/Feb/2024:23:59:59 +0000] \"GET /x HTTP/2.0\" 404 12",
        ]);
        let a: Value = serde_json::from_slice(&out[0].data).unwrap();
        assert_eq!(a["time"], "2023-12-31T23:30:00Z");
        assert_eq!(
            (
                a["user"].is_null(),
                a["referrer"].is_null(),
                a["agent"].is_null()
            ),
            (true, true, true)
        );
        assert_eq!(a["bytes"], 0);
        let b: Value = serde_json::from_slice(&out[1].data).unwrap();
        assert_eq!(
            (b["status"].as_u64(), b["agent"].is_null()),
            (Some(404), true)
        );
    }

    #[test]
    fn unparsable_lines_fail_with_the_reason() {
        let out = run(&[
            b"",
            b"hello world",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36] \"GET / HTTP/1.1\" 200 1",
            b"1.2.3.4 - - [31/Apr/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 200 1",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"\\x16\\x03\" 400 1",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" abc 1",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 200 1 \"unterminated",
            b"\xff\xfe",
            "1.2.3.4 - - [10/Oct/2024:13:55:3é +0000] \"GET / HTTP/1.1\" 200 1".as_bytes(),
        ]);
        assert!(failed(&out[0]).contains("line ends before the client address"));
        assert!(failed(&out[1]).contains("line ends before the user"));
        assert!(failed(&out[2]).contains("is not DD/Mon/YYYY:HH:MM:SS +ZZZZ"));
        assert!(failed(&out[3]).contains("31/Apr/2024"));
        assert!(failed(&out[4]).contains("is not METHOD PATH PROTOCOL"));
        assert!(failed(&out[5]).contains("status \"abc\""));
        assert!(failed(&out[6]).contains("referrer has no closing"));
        assert!(failed(&out[7]).contains("not UTF-8"));
        assert!(failed(&out[8]).contains("is not DD/Mon/YYYY"));
    }

    #[test]
    fn logs_one_line_per_batch_with_failures() {
        let (_, lines) = sluice_transform::log::capture(|| run(&[b"x", b"y"]));
        assert_eq!(
            lines,
            [(
                Level::Warn,
                "test-invocation: 2 of 2 lines unparsable".to_string()
            )]
        );
        let ((), lines) = sluice_transform::log::capture(|| {
            run(&[b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 200 1"]);
        });
        assert!(lines.is_empty());
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-719_468, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
