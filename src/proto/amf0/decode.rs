//! AMF0 decoding with limits: lengths are checked before allocation, nesting is bounded.

use super::{Amf0Error, Limits, Value, marker};

/// Decodes one value from the front of `input`, advancing it past the value.
pub fn decode(input: &mut &[u8], limits: &Limits) -> Result<Value, Amf0Error> {
    Reader { input, limits }.value(1)
}

/// Decodes values until `input` is exhausted.
pub fn decode_all(mut input: &[u8], limits: &Limits) -> Result<Vec<Value>, Amf0Error> {
    let mut values = Vec::new();
    while !input.is_empty() {
        if values.len() >= limits.max_elements {
            return Err(Amf0Error::TooManyElements {
                max: limits.max_elements,
            });
        }
        values.push(decode(&mut input, limits)?);
    }
    Ok(values)
}

struct Reader<'a, 'b> {
    input: &'b mut &'a [u8],
    limits: &'b Limits,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        if self.input.len() < n {
            return Err(Amf0Error::Truncated);
        }
        let (head, tail) = self.input.split_at(n);
        *self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    /// A UTF-8 string of `len` bytes; `len` is checked before anything is copied.
    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        if len > self.limits.max_string_len {
            return Err(Amf0Error::StringTooLong {
                len,
                max: self.limits.max_string_len,
            });
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Amf0Error::InvalidUtf8)
    }

    // AMF0 §2.4 / §2.14: 16-bit and 32-bit length-prefixed strings.
    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::from(self.u16()?);
        self.utf8(len)
    }

    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        self.utf8(len)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep {
                max: self.limits.max_depth,
            });
        }
        let m = self.u8()?;
        Ok(match m {
            marker::NUMBER => Value::Number(self.f64()?),
            marker::BOOLEAN => Value::Boolean(self.u8()? != 0),
            marker::STRING => Value::String(self.short_string()?),
            marker::OBJECT => Value::Object(self.properties(depth)?),
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            // AMF0 §2.10: the count is advisory; properties run to the end marker.
            marker::ECMA_ARRAY => {
                self.u32()?;
                Value::EcmaArray(self.properties(depth)?)
            }
            // AMF0 §2.12
            marker::STRICT_ARRAY => {
                let count = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
                if count > self.limits.max_elements {
                    return Err(Amf0Error::TooManyElements {
                        max: self.limits.max_elements,
                    });
                }
                // Every element takes at least one byte: never reserve more than remains.
                let mut items = Vec::with_capacity(count.min(self.input.len()));
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            // AMF0 §2.13
            marker::DATE => {
                let millis = self.f64()?;
                let time_zone = i16::from_be_bytes(self.array()?);
                Value::Date { millis, time_zone }
            }
            marker::LONG_STRING => Value::LongString(self.long_string()?),
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// Properties of an object or ECMA array, up to the `00 00 09` end marker (AMF0 §2.5).
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.input.first() == Some(&marker::OBJECT_END) {
                self.take(1)?;
                return Ok(props);
            }
            if props.len() >= self.limits.max_elements {
                return Err(Amf0Error::TooManyElements {
                    max: self.limits.max_elements,
                });
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let mut full = bytes::BytesMut::new();
        super::super::encode(
            &Value::object([
                ("a", Value::Number(1.0)),
                (
                    "b",
                    Value::StrictArray(vec![Value::string("xyz"), Value::Null]),
                ),
            ]),
            &mut full,
        );
        for cut in 0..full.len() {
            let mut input = &full[..cut];
            assert_eq!(decode(&mut input, &limits()), Err(Amf0Error::Truncated));
        }
    }

    #[test]
    fn huge_string_length_is_rejected_before_allocation() {
        let input = [marker::LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a'];
        assert!(matches!(
            decode(&mut &input[..], &limits()),
            Err(Amf0Error::StringTooLong { .. })
        ));
    }

    #[test]
    fn huge_strict_array_count_is_rejected() {
        let input = [marker::STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, marker::NULL];
        assert_eq!(
            decode(&mut &input[..], &limits()),
            Err(Amf0Error::TooManyElements { max: 4096 })
        );
    }

    #[test]
    fn strict_array_count_within_limit_but_beyond_input_is_truncated() {
        let input = [marker::STRICT_ARRAY, 0, 0, 0x0f, 0xff, marker::NULL];
        assert_eq!(
            decode(&mut &input[..], &limits()),
            Err(Amf0Error::Truncated)
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        // 10_000 nested strict arrays of one element: far beyond the depth limit.
        let mut input = Vec::new();
        for _ in 0..10_000 {
            input.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        input.push(marker::NULL);
        assert_eq!(
            decode(&mut &input[..], &limits()),
            Err(Amf0Error::TooDeep { max: 32 })
        );
        // Nested objects too.
        let mut input = Vec::new();
        for _ in 0..10_000 {
            input.extend_from_slice(&[marker::OBJECT, 0, 1, b'k']);
        }
        assert_eq!(
            decode(&mut &input[..], &limits()),
            Err(Amf0Error::TooDeep { max: 32 })
        );
    }

    #[test]
    fn object_with_too_many_properties_is_rejected() {
        let small = Limits {
            max_elements: 2,
            ..Limits::default()
        };
        let mut input = vec![marker::OBJECT];
        for _ in 0..3 {
            input.extend_from_slice(&[0, 1, b'k', marker::NULL]);
        }
        input.extend_from_slice(&[0, 0, marker::OBJECT_END]);
        assert_eq!(
            decode(&mut &input[..], &small),
            Err(Amf0Error::TooManyElements { max: 2 })
        );
    }

    #[test]
    fn unknown_marker_and_bad_utf8_are_errors() {
        assert_eq!(
            decode(&mut &[0x11u8][..], &limits()),
            Err(Amf0Error::UnsupportedMarker(0x11))
        );
        assert_eq!(
            decode(&mut &[marker::STRING, 0, 1, 0xff][..], &limits()),
            Err(Amf0Error::InvalidUtf8)
        );
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // Count says 0 but two properties follow (encoders do this).
        let input = [
            marker::ECMA_ARRAY,
            0,
            0,
            0,
            0,
            0,
            1,
            b'a',
            marker::BOOLEAN,
            1,
            0,
            1,
            b'b',
            marker::NULL,
            0,
            0,
            marker::OBJECT_END,
        ];
        let v = decode(&mut &input[..], &limits()).unwrap_or(Value::Undefined);
        assert_eq!(v.get("a"), Some(&Value::Boolean(true)));
        assert_eq!(v.get("b"), Some(&Value::Null));
    }
}
