//! AMF0 encoding. Infallible: values that AMF0 cannot express exactly are written in the nearest
//! valid form (see [`encode`]).

use bytes::{BufMut, BytesMut};

use super::{Value, marker};

/// Appends `value` to `out`.
///
/// A `String` longer than 65535 bytes is written as a long string; a property name longer than
/// 65535 bytes is cut at the last character boundary that fits (AMF0 names are 16-bit counted).
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(marker::NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(marker::BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) => encode_str(s, out),
        Value::Object(props) => {
            out.put_u8(marker::OBJECT);
            put_properties(props, out);
        }
        Value::Null => out.put_u8(marker::NULL),
        Value::Undefined => out.put_u8(marker::UNDEFINED),
        Value::EcmaArray(props) => {
            out.put_u8(marker::ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.put_u8(marker::STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Value::Date { millis, time_zone } => {
            out.put_u8(marker::DATE);
            out.put_f64(*millis);
            out.put_i16(*time_zone);
        }
        Value::LongString(s) => put_long_string(s, out),
    }
}

/// Appends a string value (short form when it fits, long form otherwise).
pub fn encode_str(s: &str, out: &mut BytesMut) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.put_u8(marker::STRING);
            out.put_u16(len);
            out.put_slice(s.as_bytes());
        }
        Err(_) => put_long_string(s, out),
    }
}

fn put_long_string(s: &str, out: &mut BytesMut) {
    // Strings beyond 4 GiB cannot exist in a message RTMP can carry; cut rather than panic.
    let bytes = s.as_bytes();
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.put_u8(marker::LONG_STRING);
    out.put_u32(len);
    out.put_slice(bytes.get(..len as usize).unwrap_or(bytes));
}

fn put_name(name: &str, out: &mut BytesMut) {
    let mut end = name.len().min(usize::from(u16::MAX));
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = name.get(..end).unwrap_or("");
    out.put_u16(u16::try_from(cut.len()).unwrap_or(0));
    out.put_slice(cut.as_bytes());
}

fn put_properties(props: &[(String, Value)], out: &mut BytesMut) {
    for (name, value) in props {
        put_name(name, out);
        encode(value, out);
    }
    out.put_slice(&[0, 0, marker::OBJECT_END]);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Limits, decode, decode_all};
    use super::*;
    use proptest::prelude::*;

    fn round_trip(v: &Value) -> Value {
        let mut out = BytesMut::new();
        encode(v, &mut out);
        let mut input = &out[..];
        let back = decode(&mut input, &Limits::default()).unwrap();
        assert!(input.is_empty());
        back
    }

    #[test]
    fn every_type_round_trips() {
        let v = Value::object([
            ("n", Value::Number(-1.5)),
            ("b", Value::Boolean(true)),
            ("s", Value::string("héllo")),
            ("null", Value::Null),
            ("u", Value::Undefined),
            (
                "e",
                Value::EcmaArray(vec![("w".into(), Value::Number(1920.0))]),
            ),
            (
                "a",
                Value::StrictArray(vec![Value::string("hvc1"), Value::string("av01")]),
            ),
            (
                "d",
                Value::Date {
                    millis: 1.7e12,
                    time_zone: 0,
                },
            ),
            ("l", Value::LongString("long".into())),
        ]);
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn long_string_value_is_written_in_long_form() {
        let s = "x".repeat(70_000);
        let back = round_trip(&Value::String(s.clone()));
        assert_eq!(back, Value::LongString(s));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i32>().prop_map(|n| Value::Number(f64::from(n))),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,12}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(("[a-z]{0,6}", inner.clone()), 0..6).prop_map(Value::Object),
                prop::collection::vec(("[a-z]{0,6}", inner.clone()), 0..6)
                    .prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_values_round_trip(values in prop::collection::vec(arb_value(), 0..4)) {
            let mut out = BytesMut::new();
            for v in &values {
                encode(v, &mut out);
            }
            prop_assert_eq!(decode_all(&out, &Limits::default()).unwrap(), values);
        }
    }
}
