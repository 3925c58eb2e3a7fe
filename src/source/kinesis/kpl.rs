//! KPL de-aggregation, as KCL does it.
//!
//! An aggregated Kinesis record is `magic (F3 89 9A C2) | protobuf
//! AggregatedRecord | MD5 of the protobuf (16 bytes)`. It is treated as an
//! aggregate only if it is long enough, the magic matches, the MD5 matches
//! and the protobuf parses with every index in range; anything else passes
//! through unchanged as one record (KCL's rule: a producer may legitimately
//! send bytes that happen to start with the magic). User records keep the
//! outer sequence number and get sub-sequence numbers 0, 1, 2, ... in order.
//!
//! The protobuf is decoded by hand: three message types with five fields do
//! not justify a code generator, and user-record data is sliced out of the
//! outer `Bytes` without copying.

use bytes::Bytes;

/// The four bytes every KPL aggregate starts with.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The payload (a slice of the aggregate).
    pub data: Bytes,
    /// Partition key from the aggregate's key table.
    pub partition_key: String,
    /// Explicit hash key, when the producer set one.
    pub explicit_hash_key: Option<String>,
}

/// Why bytes that look like an aggregate are not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAggregate {
    /// No magic prefix, or too short: an ordinary record.
    Plain,
    /// Magic present but the digest or protobuf is wrong: passed through
    /// unchanged, and worth a warning.
    Broken(String),
}

/// Splits an aggregate into its user records.
///
/// # Errors
/// [`NotAggregate`] when `data` is not a valid aggregate; the caller passes
/// it through as one record.
pub fn deaggregate(data: &Bytes) -> Result<Vec<UserRecord>, NotAggregate> {
    if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC {
        return Err(NotAggregate::Plain);
    }
    if data.len() <= MAGIC.len() + DIGEST_LEN {
        return Err(NotAggregate::Broken("shorter than magic + digest".into()));
    }
    let body = data.slice(MAGIC.len()..data.len() - DIGEST_LEN);
    let digest = &data[data.len() - DIGEST_LEN..];
    if md5::compute(&body).0 != digest {
        return Err(NotAggregate::Broken("MD5 digest does not match".into()));
    }
    parse_aggregate(&body).map_err(NotAggregate::Broken)
}

/// Builds an aggregate (for tests and tools): the inverse of [`deaggregate`].
pub fn aggregate(records: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut keys: Vec<&str> = Vec::new();
    let mut hashes: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut encoded = Vec::new();
    for (key, hash, data) in records {
        let key_index = keys.iter().position(|k| k == key).unwrap_or_else(|| {
            keys.push(key);
            keys.len() - 1
        });
        let mut record = Vec::new();
        put_varint_field(&mut record, 1, key_index as u64);
        if let Some(hash) = hash {
            let hash_index = hashes.iter().position(|h| h == hash).unwrap_or_else(|| {
                hashes.push(hash);
                hashes.len() - 1
            });
            put_varint_field(&mut record, 2, hash_index as u64);
        }
        put_bytes_field(&mut record, 3, data);
        encoded.push(record);
    }
    for key in &keys {
        put_bytes_field(&mut body, 1, key.as_bytes());
    }
    for hash in &hashes {
        put_bytes_field(&mut body, 2, hash.as_bytes());
    }
    for record in &encoded {
        put_bytes_field(&mut body, 3, record);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&md5::compute(&body).0);
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A protobuf field as read off the wire.
enum Value {
    Varint(u64),
    Bytes(Bytes),
}

/// Iterates over the fields of one protobuf message.
struct Fields {
    buf: Bytes,
    pos: usize,
}

impl Fields {
    fn new(buf: Bytes) -> Self {
        Fields { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|&e| e <= self.buf.len())
                    .ok_or("truncated field")?;
                let bytes = self.buf.slice(self.pos..end);
                self.pos = end;
                Value::Bytes(bytes)
            }
            5 => self.skip(4)?,
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((field, value)))
    }

    fn skip(&mut self, n: usize) -> Result<Value, String> {
        if self.pos + n > self.buf.len() {
            return Err("truncated fixed-width field".into());
        }
        self.pos += n;
        Ok(Value::Varint(0))
    }
}

fn utf8(bytes: Bytes, what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn parse_aggregate(body: &Bytes) -> Result<Vec<UserRecord>, String> {
    let mut keys = Vec::new();
    let mut hashes = Vec::new();
    let mut raw_records = Vec::new();
    let mut fields = Fields::new(body.clone());
    while let Some((field, value)) = fields.next_field()? {
        match (field, value) {
            (1, Value::Bytes(b)) => keys.push(utf8(b, "partition key")?),
            (2, Value::Bytes(b)) => hashes.push(utf8(b, "explicit hash key")?),
            (3, Value::Bytes(b)) => raw_records.push(b),
            (1..=3, Value::Varint(_)) => {
                return Err(format!("field {field} has the wrong wire type"));
            }
            _ => {} // Unknown fields are skipped, as protobuf readers do.
        }
    }
    let mut out = Vec::with_capacity(raw_records.len());
    for (i, raw) in raw_records.into_iter().enumerate() {
        let (mut key_index, mut hash_index, mut data) = (None, None, None);
        let mut fields = Fields::new(raw);
        while let Some((field, value)) = fields.next_field()? {
            match (field, value) {
                (1, Value::Varint(v)) => key_index = Some(v),
                (2, Value::Varint(v)) => hash_index = Some(v),
                (3, Value::Bytes(b)) => data = Some(b),
                (1..=3, _) => {
                    return Err(format!("record {i}: field {field} has the wrong wire type"));
                }
                _ => {} // Tags (field 4) and unknown fields.
            }
        }
        let key_index =
            key_index.ok_or_else(|| format!("record {i} has no partition_key_index"))?;
        let partition_key = keys
            .get(key_index as usize)
            .ok_or_else(|| format!("record {i}: partition key index {key_index} out of range"))?
            .clone();
        let explicit_hash_key = match hash_index {
            None => None,
            Some(h) => Some(
                hashes
                    .get(h as usize)
                    .ok_or_else(|| format!("record {i}: explicit hash key index {h} out of range"))?
                    .clone(),
            ),
        };
        let data = data.ok_or_else(|| format!("record {i} has no data"))?;
        out.push(UserRecord {
            data,
            partition_key,
            explicit_hash_key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_round_trip_with_keys_and_hash_keys() {
        let agg = Bytes::from(aggregate(&[
            ("pk-a", None, b"one"),
            ("pk-b", Some("12345"), b""),
            ("pk-a", None, b"three\x00\xff"),
        ]));
        let records = deaggregate(&agg).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            UserRecord {
                data: Bytes::from_static(b"one"),
                partition_key: "pk-a".into(),
                explicit_hash_key: None
            }
        );
        assert_eq!(records[1].explicit_hash_key.as_deref(), Some("12345"));
        assert_eq!(records[1].data.len(), 0);
        assert_eq!(&records[2].data[..], b"three\x00\xff");
        assert_eq!(records[2].partition_key, "pk-a");
    }

    #[test]
    fn plain_records_pass_through() {
        assert_eq!(
            deaggregate(&Bytes::from_static(b"{\"a\":1}")),
            Err(NotAggregate::Plain)
        );
        assert_eq!(
            deaggregate(&Bytes::from_static(b"\xF3\x89")),
            Err(NotAggregate::Plain)
        );
    }

    #[test]
    fn broken_aggregates_are_detected_not_trusted() {
        let good = aggregate(&[("k", None, b"data")]);
        // Flipped payload byte: the digest no longer matches.
        let mut bad_digest = good.clone();
        bad_digest[8] ^= 1;
        assert!(
            matches!(deaggregate(&Bytes::from(bad_digest)), Err(NotAggregate::Broken(m)) if m.contains("MD5"))
        );
        // Magic and digest only.
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&[0; 16]);
        assert!(matches!(
            deaggregate(&Bytes::from(short)),
            Err(NotAggregate::Broken(_))
        ));
        // Valid digest over a protobuf whose record points past the key table.
        let mut record = Vec::new();
        put_varint_field(&mut record, 1, 5);
        put_bytes_field(&mut record, 3, b"x");
        let mut body = Vec::new();
        put_bytes_field(&mut body, 1, b"k");
        put_bytes_field(&mut body, 3, &record);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&md5::compute(&body).0);
        assert!(
            matches!(deaggregate(&Bytes::from(out)), Err(NotAggregate::Broken(m)) if m.contains("out of range"))
        );
        // Valid digest over garbage.
        let body = vec![0xFF; 10];
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&md5::compute(&body).0);
        assert!(matches!(
            deaggregate(&Bytes::from(out)),
            Err(NotAggregate::Broken(_))
        ));
    }
}
