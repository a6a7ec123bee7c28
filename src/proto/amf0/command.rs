//! RTMP command message bodies in AMF0: `name, transaction id, command object, args...`
//! (RTMP 1.0 §7.1.1, §7.2).

use bytes::BytesMut;

use super::{Amf0Error, Limits, Value, decode, encode, encode_str};

/// A decoded command message.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// The command object; `Null` when absent (some clients omit it).
    pub command_object: Value,
    /// Everything after the command object.
    pub args: Vec<Value>,
}

impl Command {
    /// Decodes a command body. Name and transaction id are required; the rest may be absent.
    pub fn decode(payload: &[u8], limits: &Limits) -> Result<Command, Amf0Error> {
        let mut input = payload;
        let name = match decode(&mut input, limits)? {
            Value::String(s) | Value::LongString(s) => s,
            _ => return Err(Amf0Error::MissingCommandName),
        };
        // Some senders omit the transaction id on notifications (e.g. onStatus data); treat an
        // empty tail as 0 but anything else non-numeric as malformed.
        let transaction_id = if input.is_empty() {
            0.0
        } else {
            match decode(&mut input, limits)? {
                Value::Number(n) => n,
                _ => return Err(Amf0Error::MissingTransactionId),
            }
        };
        let command_object = if input.is_empty() {
            Value::Null
        } else {
            decode(&mut input, limits)?
        };
        let mut args = Vec::new();
        while !input.is_empty() {
            if args.len() >= limits.max_elements {
                return Err(Amf0Error::TooManyElements {
                    max: limits.max_elements,
                });
            }
            args.push(decode(&mut input, limits)?);
        }
        Ok(Command {
            name,
            transaction_id,
            command_object,
            args,
        })
    }

    /// Appends the encoded command body to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        encode_str(&self.name, out);
        encode(&Value::Number(self.transaction_id), out);
        encode(&self.command_object, out);
        for arg in &self.args {
            encode(arg, out);
        }
    }

    /// The `i`th argument after the command object.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trips() {
        let cmd = Command {
            name: "publish".into(),
            transaction_id: 5.0,
            command_object: Value::Null,
            args: vec![Value::string("key?token=1"), Value::string("live")],
        };
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        assert_eq!(Command::decode(&out, &Limits::default()).unwrap(), cmd);
    }

    #[test]
    fn command_without_name_string_is_rejected() {
        let mut out = BytesMut::new();
        encode(&Value::Number(1.0), &mut out);
        assert_eq!(
            Command::decode(&out, &Limits::default()),
            Err(Amf0Error::MissingCommandName)
        );
    }

    #[test]
    fn command_with_only_a_name_has_defaults() {
        let mut out = BytesMut::new();
        encode_str("onBWDone", &mut out);
        let cmd = Command::decode(&out, &Limits::default()).unwrap();
        assert_eq!(cmd.transaction_id, 0.0);
        assert_eq!(cmd.command_object, Value::Null);
    }
}
