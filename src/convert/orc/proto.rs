//! The subset of ORC's protobuf messages (`orc_proto.proto`, Apache ORC) that
//! the writer emits. Field numbers and wire types follow the upstream file;
//! fields sluice never writes (encryption, attributes, user metadata) are left
//! out, which protobuf allows. Enumerations are plain `int32` on the wire, so
//! they are kept as `i32` with the constants below.

#![allow(missing_docs, unreachable_pub)]

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct IntegerStatistics {
    #[prost(sint64, optional, tag = "1")]
    pub minimum: Option<i64>,
    #[prost(sint64, optional, tag = "2")]
    pub maximum: Option<i64>,
    #[prost(sint64, optional, tag = "3")]
    pub sum: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DoubleStatistics {
    #[prost(double, optional, tag = "1")]
    pub minimum: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub maximum: Option<f64>,
    #[prost(double, optional, tag = "3")]
    pub sum: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStatistics {
    #[prost(string, optional, tag = "1")]
    pub minimum: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub maximum: Option<String>,
    #[prost(sint64, optional, tag = "3")]
    pub sum: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BucketStatistics {
    #[prost(uint64, repeated, tag = "1")]
    pub count: Vec<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DateStatistics {
    #[prost(sint32, optional, tag = "1")]
    pub minimum: Option<i32>,
    #[prost(sint32, optional, tag = "2")]
    pub maximum: Option<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BinaryStatistics {
    #[prost(sint64, optional, tag = "1")]
    pub sum: Option<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ColumnStatistics {
    #[prost(uint64, optional, tag = "1")]
    pub number_of_values: Option<u64>,
    #[prost(message, optional, tag = "2")]
    pub int_statistics: Option<IntegerStatistics>,
    #[prost(message, optional, tag = "3")]
    pub double_statistics: Option<DoubleStatistics>,
    #[prost(message, optional, tag = "4")]
    pub string_statistics: Option<StringStatistics>,
    #[prost(message, optional, tag = "5")]
    pub bucket_statistics: Option<BucketStatistics>,
    #[prost(message, optional, tag = "7")]
    pub date_statistics: Option<DateStatistics>,
    #[prost(message, optional, tag = "8")]
    pub binary_statistics: Option<BinaryStatistics>,
    #[prost(bool, optional, tag = "10")]
    pub has_null: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RowIndexEntry {
    #[prost(uint64, repeated, tag = "1")]
    pub positions: Vec<u64>,
    #[prost(message, optional, tag = "2")]
    pub statistics: Option<ColumnStatistics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RowIndex {
    #[prost(message, repeated, tag = "1")]
    pub entry: Vec<RowIndexEntry>,
}

/// `Stream.Kind` values.
pub mod stream_kind {
    pub const PRESENT: i32 = 0;
    pub const DATA: i32 = 1;
    pub const LENGTH: i32 = 2;
    pub const SECONDARY: i32 = 5;
    pub const ROW_INDEX: i32 = 6;
}

#[derive(Clone, PartialEq, Message)]
pub struct Stream {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub column: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    pub length: Option<u64>,
}

/// `ColumnEncoding.Kind` values.
pub mod encoding_kind {
    pub const DIRECT: i32 = 0;
    pub const DIRECT_V2: i32 = 2;
}

#[derive(Clone, PartialEq, Message)]
pub struct ColumnEncoding {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub dictionary_size: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    pub bloom_encoding: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StripeFooter {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
    #[prost(message, repeated, tag = "2")]
    pub columns: Vec<ColumnEncoding>,
    #[prost(string, optional, tag = "3")]
    pub writer_timezone: Option<String>,
}

/// `Type.Kind` values.
pub mod type_kind {
    pub const BOOLEAN: i32 = 0;
    pub const BYTE: i32 = 1;
    pub const SHORT: i32 = 2;
    pub const INT: i32 = 3;
    pub const LONG: i32 = 4;
    pub const FLOAT: i32 = 5;
    pub const DOUBLE: i32 = 6;
    pub const STRING: i32 = 7;
    pub const BINARY: i32 = 8;
    pub const TIMESTAMP: i32 = 9;
    pub const LIST: i32 = 10;
    pub const MAP: i32 = 11;
    pub const STRUCT: i32 = 12;
    pub const DECIMAL: i32 = 14;
    pub const DATE: i32 = 15;
}

#[derive(Clone, PartialEq, Message)]
pub struct Type {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, repeated, tag = "2")]
    pub subtypes: Vec<u32>,
    #[prost(string, repeated, tag = "3")]
    pub field_names: Vec<String>,
    #[prost(uint32, optional, tag = "4")]
    pub maximum_length: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub precision: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub scale: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StripeInformation {
    #[prost(uint64, optional, tag = "1")]
    pub offset: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub index_length: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub data_length: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub footer_length: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub number_of_rows: Option<u64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StripeStatistics {
    #[prost(message, repeated, tag = "1")]
    pub col_stats: Vec<ColumnStatistics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    #[prost(message, repeated, tag = "1")]
    pub stripe_stats: Vec<StripeStatistics>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Footer {
    #[prost(uint64, optional, tag = "1")]
    pub header_length: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub content_length: Option<u64>,
    #[prost(message, repeated, tag = "3")]
    pub stripes: Vec<StripeInformation>,
    #[prost(message, repeated, tag = "4")]
    pub types: Vec<Type>,
    #[prost(uint64, optional, tag = "6")]
    pub number_of_rows: Option<u64>,
    #[prost(message, repeated, tag = "7")]
    pub statistics: Vec<ColumnStatistics>,
    #[prost(uint32, optional, tag = "8")]
    pub row_index_stride: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub writer: Option<u32>,
    #[prost(string, optional, tag = "12")]
    pub software_version: Option<String>,
}

/// `CompressionKind` values.
pub mod compression_kind {
    pub const NONE: i32 = 0;
    pub const ZLIB: i32 = 1;
    pub const SNAPPY: i32 = 2;
    pub const ZSTD: i32 = 5;
}

#[derive(Clone, PartialEq, Message)]
pub struct PostScript {
    #[prost(uint64, optional, tag = "1")]
    pub footer_length: Option<u64>,
    #[prost(int32, optional, tag = "2")]
    pub compression: Option<i32>,
    #[prost(uint64, optional, tag = "3")]
    pub compression_block_size: Option<u64>,
    #[prost(uint32, repeated, tag = "4")]
    pub version: Vec<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub metadata_length: Option<u64>,
    #[prost(uint32, optional, tag = "6")]
    pub writer_version: Option<u32>,
    #[prost(string, optional, tag = "8000")]
    pub magic: Option<String>,
}
