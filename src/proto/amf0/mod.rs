//! AMF0 (Action Message Format version 0): the value encoding RTMP commands and script data use.
//!
//! [`Value`] is the decoded form; [`decode()`] reads one value from the front of a byte slice and
//! [`encode()`] appends one value to a buffer. Every length read from the wire is checked against
//! [`Limits`] before anything is allocated, and nesting is depth-bounded, so a hostile peer gets
//! an [`Amf0Error`], never an allocation bomb or a stack overflow. [`Command`] reads and writes
//! the `name, transaction id, command object, args...` layout of RTMP command messages.
//!
//! Spec: "Action Message Format -- AMF 0" (Adobe, 2007), cited as `AMF0 §x`.
//! Nothing here does IO.

mod command;
mod decode;
mod encode;

pub use command::Command;
pub use decode::{decode, decode_all};
pub use encode::{encode, encode_str};

use thiserror::Error;

/// Type markers (AMF0 §2.1).
pub(crate) mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// A UTF-8 string. Encoded as a long string if longer than 65535 bytes.
    String(String),
    /// An anonymous object: properties in wire order (duplicates kept).
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    /// An associative array: properties in wire order. The wire count is only a hint.
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the Unix epoch, and a time zone field that AMF0 says must be 0.
    Date {
        millis: f64,
        time_zone: i16,
    },
    LongString(String),
}

impl Value {
    /// The string, for `String` and `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The number, for `Number`.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The properties, for `Object` and `EcmaArray`.
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The first property named `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Builds an `Object` from `(&str, Value)` pairs.
    pub fn object<'a>(props: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A `String` value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
}

/// Bounds applied while decoding. Defaults suit RTMP commands and metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest string (short or long form) in bytes.
    pub max_string_len: usize,
    /// Most properties or elements in one object or array.
    pub max_elements: usize,
    /// Deepest nesting of objects and arrays (the top-level value is depth 1).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string_len: 1 << 20,
            max_elements: 4096,
            max_depth: 32,
        }
    }
}

/// What went wrong decoding AMF0. Truncation and garbage are the peer's fault; the `*Limit*`
/// variants mean the input may be valid but exceeds what we accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    #[error("AMF0 input ends inside a value")]
    Truncated,
    #[error("unsupported AMF0 type marker 0x{0:02x}")]
    UnsupportedMarker(u8),
    #[error("AMF0 string is not UTF-8")]
    InvalidUtf8,
    #[error("AMF0 string of {len} bytes exceeds the limit of {max}")]
    StringTooLong { len: usize, max: usize },
    #[error("AMF0 container with more than {max} elements")]
    TooManyElements { max: usize },
    #[error("AMF0 nesting deeper than {max}")]
    TooDeep { max: usize },
    #[error("AMF0 command does not start with a name string")]
    MissingCommandName,
    #[error("AMF0 command has no transaction id number")]
    MissingTransactionId,
}

impl Amf0Error {
    /// True when the input broke a configured limit rather than the format.
    pub fn is_limit_exceeded(&self) -> bool {
        matches!(
            self,
            Amf0Error::StringTooLong { .. }
                | Amf0Error::TooManyElements { .. }
                | Amf0Error::TooDeep { .. }
        )
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: decode arbitrary bytes, and re-encode what decodes; it must decode again.
pub fn fuzz_decode(data: &[u8]) {
    if let Ok(values) = decode_all(data, &Limits::default()) {
        let mut out = bytes::BytesMut::new();
        for v in &values {
            encode(v, &mut out);
        }
        let _ = decode_all(&out, &Limits::default());
    }
}
