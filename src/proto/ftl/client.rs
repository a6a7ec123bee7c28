//! The client side of the FTL control channel, for the load generator's publisher: the lines the
//! reference client sends (each ends in `\r\n\r\n`, as it does) and parsing of server replies.

use bytes::{Bytes, BytesMut};

use super::attributes::StreamAttributes;
use super::{CHALLENGE_LEN, hmac_digest};

/// The reference client's line terminator.
const EOL: &str = "\r\n\r\n";

/// `HMAC`: asks for the challenge.
pub fn hmac_request() -> Bytes {
    Bytes::from(format!("HMAC{EOL}"))
}

/// `CONNECT <channel> $<hex digest>` answering `challenge` with the stream key's secret.
pub fn connect_line(channel_id: u32, secret: &[u8], challenge: &[u8]) -> Bytes {
    let digest = hex::encode(hmac_digest(secret, challenge));
    Bytes::from(format!("CONNECT {channel_id} ${digest}{EOL}"))
}

/// The attribute lines in the reference client's order, then `.`.
pub fn attribute_lines(attributes: &StreamAttributes) -> Bytes {
    let mut out = String::new();
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        out.push_str(&format!("{key}: {value}{EOL}"));
    };
    line("ProtocolVersion", &attributes.protocol_version);
    line("VendorName", &attributes.vendor_name);
    line("VendorVersion", &attributes.vendor_version);
    if let Some(video) = &attributes.video {
        line("Video", &"true");
        line("VideoCodec", &video.codec.name());
        if let Some(height) = video.height {
            line("VideoHeight", &height);
        }
        if let Some(width) = video.width {
            line("VideoWidth", &width);
        }
        line("VideoPayloadType", &video.payload_type);
        line("VideoIngestSSRC", &video.ssrc);
    }
    if let Some(audio) = &attributes.audio {
        line("Audio", &"true");
        line("AudioCodec", &audio.codec.name());
        line("AudioPayloadType", &audio.payload_type);
        line("AudioIngestSSRC", &audio.ssrc);
    }
    for (key, value) in &attributes.unknown {
        line(key, value);
    }
    out.push_str(&format!(".{EOL}"));
    Bytes::from(out)
}

/// `PING <channel>`, every 5 s while live.
pub fn ping_line(channel_id: u32) -> Bytes {
    Bytes::from(format!("PING {channel_id}{EOL}"))
}

/// `DISCONNECT`.
pub fn disconnect_line() -> Bytes {
    Bytes::from(format!("DISCONNECT{EOL}"))
}

/// Takes one `\n`-terminated line (without `\r`/`\n`) from the front of `buf`, skipping empty
/// lines. `None` until a complete line is buffered.
pub fn take_line(buf: &mut BytesMut) -> Option<String> {
    loop {
        let newline = buf.iter().position(|&b| b == b'\n')?;
        let raw = buf.split_to(newline + 1);
        let line = String::from_utf8_lossy(&raw).trim().to_owned();
        if !line.is_empty() {
            return Some(line);
        }
    }
}

/// One server reply: the leading integer and the rest of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub code: u16,
    pub rest: &'a str,
}

/// Parses a reply line by its leading integer, as the reference client does.
pub fn parse_reply(line: &str) -> Option<Reply<'_>> {
    let line = line.trim();
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    let code = line.get(..digits)?.parse().ok()?;
    Some(Reply {
        code,
        rest: line.get(digits..).unwrap_or_default(),
    })
}

impl Reply<'_> {
    /// The 128 challenge bytes of a `200 <hex>` reply to `HMAC`.
    pub fn challenge(&self) -> Option<[u8; CHALLENGE_LEN]> {
        let mut out = [0u8; CHALLENGE_LEN];
        hex::decode_to_slice(self.rest.trim(), &mut out).ok()?;
        (self.code == 200).then_some(out)
    }

    /// The port of a `200. Use UDP port N` reply (`%*[^.]. Use UDP port %d`, like the client).
    pub fn udp_port(&self) -> Option<u16> {
        if self.code != 200 {
            return None;
        }
        let (_, after) = self.rest.split_once('.')?;
        after
            .trim()
            .strip_prefix("Use UDP port")?
            .trim()
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn replies_parse() {
        let r = parse_reply("200. Use UDP port 65534").unwrap();
        assert_eq!(r.udp_port(), Some(65534));
        assert_eq!(
            parse_reply("200 hi. Use UDP port 9").unwrap().udp_port(),
            Some(9)
        );
        assert_eq!(parse_reply("201").unwrap().code, 201);
        assert_eq!(parse_reply("405").unwrap().udp_port(), None);
        assert!(parse_reply("hello").is_none());
        let hex = "ab".repeat(128);
        let line = format!("200 {hex}");
        let r = parse_reply(&line).unwrap();
        assert_eq!(r.challenge(), Some([0xab; 128]));
        let mut buf = BytesMut::from(&b"\r\n201\r\n20"[..]);
        assert_eq!(take_line(&mut buf).as_deref(), Some("201"));
        assert_eq!(take_line(&mut buf), None);
    }
}
