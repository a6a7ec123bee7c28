//! fstream requests as the loadgen sends them: which handshake payload names a stream, framed
//! by ringcast's `encode_request` (`u32 BE LEN | 0x00 | LEN bytes of "action,key=value,..."`).
//!
//! Streams are named the way the relay names them, so `--stream` means the same thing over RTMP
//! and fstream: `fstream/USER/CHANNEL` is an fstream channel (watched with `user=`/`channel=`,
//! broadcast with `user=`/`user-password=`/`channel=`); any other `APP/KEY` is watched with
//! ringcast's `stream=APP/KEY` extension and cannot be broadcast over fstream. No IO here.

use bytes::Bytes;

/// The app under which the relay registers fstream channels.
const FSTREAM_APP: &str = "fstream";

/// An fstream channel named by a stream: `fstream/USER/CHANNEL` → (USER, CHANNEL).
fn channel_of(stream: &str) -> Option<(&str, &str)> {
    let rest = stream.strip_prefix(FSTREAM_APP)?.strip_prefix('/')?;
    rest.split_once('/')
}

/// Refuses values that would break the `key=value,...` grammar (which has no escaping).
fn checked<'a>(key: &str, value: &'a str) -> Result<&'a str, String> {
    if value.contains(',') {
        return Err(format!("fstream {key} must not contain ','"));
    }
    Ok(value)
}

/// A channel's user or name: also a path component on the relay.
fn checked_name<'a>(key: &str, value: &'a str) -> Result<&'a str, String> {
    if value.is_empty() || value.contains('/') {
        return Err(format!(
            "fstream {key} must be non-empty and contain no '/'"
        ));
    }
    checked(key, value)
}

/// The payload that watches `stream`: `watch,user=U,channel=C[,channel-password=P]` for an
/// fstream channel, `watch,stream=APP/KEY` for anything else.
pub fn watch_payload(stream: &str, channel_password: Option<&str>) -> Result<String, String> {
    if let Some((user, channel)) = channel_of(stream) {
        let mut payload = format!(
            "watch,user={},channel={}",
            checked_name("user", user)?,
            checked_name("channel", channel)?
        );
        if let Some(password) = channel_password {
            payload.push_str(",channel-password=");
            payload.push_str(checked("channel-password", password)?);
        }
        return Ok(payload);
    }
    if channel_password.is_some() {
        return Err(format!(
            "a channel password only applies to fstream channels (fstream/USER/CHANNEL), not {stream}"
        ));
    }
    if !stream.contains('/') {
        return Err(format!("stream {stream:?} must be APP/KEY"));
    }
    Ok(format!("watch,stream={}", checked("stream", stream)?))
}

/// The payload that broadcasts to `stream`, which must be `fstream/USER/CHANNEL`:
/// `broadcast,user=U,user-password=P,channel=C[,channel-password=Q]`.
pub fn broadcast_payload(
    stream: &str,
    user_password: &str,
    channel_password: Option<&str>,
) -> Result<String, String> {
    let Some((user, channel)) = channel_of(stream) else {
        return Err(format!(
            "an fstream broadcast is always named fstream/USER/CHANNEL, not {stream}"
        ));
    };
    let mut payload = format!(
        "broadcast,user={},user-password={},channel={}",
        checked_name("user", user)?,
        checked("user-password", user_password)?,
        checked_name("channel", channel)?
    );
    if let Some(password) = channel_password {
        payload.push_str(",channel-password=");
        payload.push_str(checked("channel-password", password)?);
    }
    Ok(payload)
}

/// The handshake frame for `payload`.
pub fn handshake(payload: &str) -> Result<Bytes, String> {
    ringcast::proto::fstream::encode_request(payload).map_err(|e| format!("fstream request: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use bytes::BytesMut;
    use ringcast::proto::fstream::{Action, HandshakeDecoder, Request};

    use super::*;

    /// What the relay's own decoder makes of the frame we send.
    fn decoded(payload: &str) -> Request {
        let mut wire = BytesMut::from(&handshake(payload).unwrap()[..]);
        let request = HandshakeDecoder::default()
            .decode(&mut wire)
            .unwrap()
            .unwrap();
        assert!(wire.is_empty());
        request
    }

    #[test]
    fn frame_is_length_nul_payload() {
        let frame = handshake("watch,stream=live/bench").unwrap();
        assert_eq!(&frame[..5], &[0, 0, 0, 23, 0]);
        assert_eq!(&frame[5..], b"watch,stream=live/bench");
        assert!(handshake("").is_err());
    }

    #[test]
    fn media_streams_are_watched_by_name() {
        let payload = watch_payload("live/bench", None).unwrap();
        assert_eq!(payload, "watch,stream=live/bench");
        let request = decoded(&payload);
        assert_eq!(request.action, Action::Watch);
        assert_eq!(request.stream_name(), "live/bench");
    }

    #[test]
    fn fstream_channels_are_watched_by_user_and_channel() {
        let payload = watch_payload("fstream/bench/main", Some("c=1")).unwrap();
        assert_eq!(
            payload,
            "watch,user=bench,channel=main,channel-password=c=1"
        );
        let request = decoded(&payload);
        assert_eq!(request.stream_name(), "fstream/bench/main");
        assert!(request.channel_password.unwrap().matches(b"c=1"));
        assert_eq!(
            watch_payload("fstream/bench/main", None).unwrap(),
            "watch,user=bench,channel=main"
        );
    }

    #[test]
    fn broadcasts_name_an_fstream_channel() {
        let payload = broadcast_payload("fstream/bench/main", "pw", None).unwrap();
        assert_eq!(
            payload,
            "broadcast,user=bench,user-password=pw,channel=main"
        );
        let request = decoded(&payload);
        assert_eq!(request.action, Action::Broadcast);
        assert_eq!(request.stream_name(), "fstream/bench/main");
        assert!(request.user_password.unwrap().matches(b"pw"));
        let with_channel_password =
            broadcast_payload("fstream/bench/main", "pw", Some("456")).unwrap();
        assert!(with_channel_password.ends_with(",channel-password=456"));
        assert!(decoded(&with_channel_password).channel_password.is_some());
    }

    #[test]
    fn requests_the_grammar_cannot_carry_are_refused() {
        assert!(broadcast_payload("live/bench", "pw", None).is_err());
        assert!(broadcast_payload("fstream/bench", "pw", None).is_err());
        assert!(broadcast_payload("fstream/bench/a/b", "pw", None).is_err());
        assert!(broadcast_payload("fstream/bench/main", "a,b", None).is_err());
        assert!(watch_payload("fstream/bench/main", Some("a,b")).is_err());
        assert!(watch_payload("fstream//main", None).is_err());
        assert!(watch_payload("live/bench", Some("pw")).is_err());
        assert!(watch_payload("bench", None).is_err());
    }
}
