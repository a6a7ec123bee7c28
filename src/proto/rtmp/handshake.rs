//! The RTMP handshake (RTMP 1.0 §5.2): C0/C1/C2 and S0/S1/S2, in the simple form the spec
//! describes and the FP9 "digest" form Flash, ffmpeg and OBS use.
//!
//! Digest form (not in the published spec; facts as implemented by Flash Player, FMS, ffmpeg,
//! nginx-rtmp): C1/S1 are `time(4) version(4) block(764) block(764)`. One 764-byte block holds a
//! 32-byte HMAC-SHA256 digest at an offset derived from four offset bytes: scheme 0 puts the
//! digest block first (offset bytes at 8..12, digest at `sum % 728 + 12`), scheme 1 second
//! (offset bytes at 772..776, digest at `sum % 728 + 776`). The digest covers the packet minus
//! its own 32 bytes, keyed with the first 30 bytes of the player key (C1) or the first 36 of the
//! server key (S1). S2 and C2 end in an HMAC of their first 1504 bytes keyed by
//! `HMAC(full key, peer's digest)`. Randomness is passed in; nothing here does IO.

use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Size of C1, C2, S1, S2.
pub const PACKET_SIZE: usize = 1536;
/// The random part of C1/S1 the caller provides.
pub const RANDOM_SIZE: usize = 1528;
const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;
const SIGNED_LEN: usize = PACKET_SIZE - DIGEST_LEN;

const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
const PLAYER_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const SERVER_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
/// Version we advertise in S1 bytes 4..8; ffmpeg checks the first byte is at least 3.
const SERVER_VERSION: [u8; 4] = [0x05, 0x00, 0x03, 0x01];
/// Version our client advertises in C1 (Flash Player 9.0.124.2, as ffmpeg sends).
const CLIENT_VERSION: [u8; 4] = [0x09, 0x00, 0x7c, 0x02];

fn full_key<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut key = [0u8; N];
    for (dst, src) in key.iter_mut().zip(text.iter().chain(KEY_TAIL.iter())) {
        *dst = *src;
    }
    key
}

/// Which form the handshake took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// C1 version zero (or an unverifiable digest): S2 echoes C1.
    Simple,
    /// FP9 digest handshake with the client's digest at offset scheme 0 or 1.
    Digest { scheme: u8 },
}

/// What went wrong in the handshake. All are peer errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("unsupported RTMP version {0} (only 3; 6 is RTMPE)")]
    UnsupportedVersion(u8),
    #[error("server S1 digest does not verify")]
    ServerDigestMismatch,
    #[error("server S2 signature does not match our C1 digest")]
    ServerSignatureMismatch,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return [0; DIGEST_LEN];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Offset of the digest in a C1/S1 packet for `scheme` (0 or 1).
fn digest_offset(packet: &[u8; PACKET_SIZE], scheme: u8) -> usize {
    let base = if scheme == 0 { 8 } else { 772 };
    let sum: usize = packet
        .get(base..base + 4)
        .unwrap_or_default()
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    sum % 728 + base + 4
}

/// The digest of `packet` excluding the 32 bytes at `offset`.
fn packet_digest(packet: &[u8; PACKET_SIZE], offset: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    let before = packet.get(..offset).unwrap_or_default();
    let after = packet.get(offset + DIGEST_LEN..).unwrap_or_default();
    hmac_sha256(key, &[before, after])
}

/// Finds a valid digest in `packet`: `(scheme, digest)`.
fn find_digest(packet: &[u8; PACKET_SIZE], key: &[u8]) -> Option<(u8, [u8; DIGEST_LEN])> {
    [0u8, 1].into_iter().find_map(|scheme| {
        let offset = digest_offset(packet, scheme);
        let expected = packet_digest(packet, offset, key);
        let found = packet.get(offset..offset + DIGEST_LEN)?;
        bool::from(expected.ct_eq(found)).then_some((scheme, expected))
    })
}

/// Builds C1/S1: zero time, `version`, `random`, and (if `key` is given) a digest placed by
/// `scheme`. Returns the packet and its digest.
fn signed_packet(
    version: [u8; 4],
    random: &[u8; RANDOM_SIZE],
    key: Option<&[u8]>,
    scheme: u8,
) -> ([u8; PACKET_SIZE], [u8; DIGEST_LEN]) {
    let mut packet = [0u8; PACKET_SIZE];
    packet[4..8].copy_from_slice(&version);
    packet[8..].copy_from_slice(random);
    let mut digest = [0u8; DIGEST_LEN];
    if let Some(key) = key {
        let offset = digest_offset(&packet, scheme);
        digest = packet_digest(&packet, offset, key);
        if let Some(slot) = packet.get_mut(offset..offset + DIGEST_LEN) {
            slot.copy_from_slice(&digest);
        }
    }
    (packet, digest)
}

/// C2/S2 answering a digest handshake: filler then `HMAC(HMAC(full_key, peer_digest), filler)`.
fn signed_response(filler: &[u8], full_key: &[u8], peer_digest: &[u8]) -> [u8; PACKET_SIZE] {
    let mut packet = [0u8; PACKET_SIZE];
    for (dst, src) in packet.iter_mut().zip(filler.iter().cycle()) {
        *dst = *src;
    }
    let key = hmac_sha256(full_key, &[peer_digest]);
    let sig = hmac_sha256(&key, &[&packet[..SIGNED_LEN]]);
    packet[SIGNED_LEN..].copy_from_slice(&sig);
    packet
}

fn take_packet(buf: &mut BytesMut) -> [u8; PACKET_SIZE] {
    let mut packet = [0u8; PACKET_SIZE];
    buf.copy_to_slice(&mut packet);
    packet
}

#[derive(Debug)]
enum ServerState {
    ExpectC0C1,
    ExpectC2,
    Done,
}

/// Server side of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    random: [u8; RANDOM_SIZE],
    kind: Option<HandshakeKind>,
}

impl ServerHandshake {
    /// `random` fills S1 (and S2 in the digest form).
    pub fn new(random: [u8; RANDOM_SIZE]) -> Self {
        ServerHandshake {
            state: ServerState::ExpectC0C1,
            random,
            kind: None,
        }
    }

    /// Which form the client used, once C1 has arrived.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done)
    }

    /// Consumes handshake bytes from `buf` and appends S0/S1/S2 to `out`. Returns true once C2
    /// has been consumed; bytes after C2 stay in `buf` for the chunk layer.
    pub fn handle_input(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        loop {
            match self.state {
                ServerState::ExpectC0C1 => {
                    // C0 is rejected as soon as it arrives.
                    match buf.first() {
                        Some(&RTMP_VERSION) => {}
                        Some(&v) => return Err(HandshakeError::UnsupportedVersion(v)),
                        None => return Ok(false),
                    }
                    if buf.len() < 1 + PACKET_SIZE {
                        return Ok(false);
                    }
                    buf.advance(1);
                    let c1 = take_packet(buf);
                    self.respond(&c1, out);
                    self.state = ServerState::ExpectC2;
                }
                ServerState::ExpectC2 => {
                    // C2 is not verified: Flash-era clients disagree on its contents, and it
                    // proves nothing the TCP connection does not.
                    if buf.len() < PACKET_SIZE {
                        return Ok(false);
                    }
                    buf.advance(PACKET_SIZE);
                    self.state = ServerState::Done;
                }
                ServerState::Done => return Ok(true),
            }
        }
    }

    fn respond(&mut self, c1: &[u8; PACKET_SIZE], out: &mut BytesMut) {
        out.reserve(1 + 2 * PACKET_SIZE);
        out.put_u8(RTMP_VERSION);
        let client_digest = if c1[4..8] == [0; 4] {
            None
        } else {
            find_digest(c1, &PLAYER_KEY_TEXT[..])
        };
        match client_digest {
            Some((scheme, digest)) => {
                self.kind = Some(HandshakeKind::Digest { scheme });
                let server_key = full_key::<68>(SERVER_KEY_TEXT);
                let (s1, _) = signed_packet(
                    SERVER_VERSION,
                    &self.random,
                    Some(&SERVER_KEY_TEXT[..]),
                    scheme,
                );
                out.put_slice(&s1);
                let filler = self.random.get(24..).unwrap_or_default();
                out.put_slice(&signed_response(filler, &server_key, &digest));
            }
            None => {
                // RTMP 1.0 §5.2.3/§5.2.4: S1 time and zero fields, random; S2 echoes C1.
                if c1[4..8] != [0; 4] {
                    tracing::debug!("C1 digest did not verify; using the simple handshake");
                }
                self.kind = Some(HandshakeKind::Simple);
                let (s1, _) = signed_packet([0; 4], &self.random, None, 0);
                out.put_slice(&s1);
                out.put_slice(c1);
            }
        }
    }
}

#[derive(Debug)]
enum ClientState {
    ExpectS0S1S2,
    Done,
}

/// Client side of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    random: [u8; RANDOM_SIZE],
    /// Our C1 digest, when we sent the digest form.
    c1_digest: Option<[u8; DIGEST_LEN]>,
}

impl ClientHandshake {
    /// Starts a digest handshake (scheme 0, as ffmpeg): appends C0 and C1 to `out`.
    pub fn new(random: [u8; RANDOM_SIZE], out: &mut BytesMut) -> Self {
        Self::start(random, true, out)
    }

    /// Starts a simple handshake (C1 version zero): appends C0 and C1 to `out`.
    pub fn new_simple(random: [u8; RANDOM_SIZE], out: &mut BytesMut) -> Self {
        Self::start(random, false, out)
    }

    fn start(random: [u8; RANDOM_SIZE], digest: bool, out: &mut BytesMut) -> Self {
        let (c1, c1_digest) = if digest {
            let (c1, d) = signed_packet(CLIENT_VERSION, &random, Some(&PLAYER_KEY_TEXT[..]), 0);
            (c1, Some(d))
        } else {
            (signed_packet([0; 4], &random, None, 0).0, None)
        };
        out.put_u8(RTMP_VERSION);
        out.put_slice(&c1);
        ClientHandshake {
            state: ClientState::ExpectS0S1S2,
            random,
            c1_digest,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done)
    }

    /// Consumes S0/S1/S2 and appends C2 to `out`. Returns true once done; later bytes stay in
    /// `buf`. A server that answers with a digest must get it right, or this fails.
    pub fn handle_input(
        &mut self,
        buf: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<bool, HandshakeError> {
        if self.is_done() {
            return Ok(true);
        }
        match buf.first() {
            Some(&RTMP_VERSION) => {}
            Some(&v) => return Err(HandshakeError::UnsupportedVersion(v)),
            None => return Ok(false),
        }
        if buf.len() < 1 + 2 * PACKET_SIZE {
            return Ok(false);
        }
        buf.advance(1);
        let s1 = take_packet(buf);
        let s2 = take_packet(buf);
        let c2 = match self.c1_digest {
            Some(c1_digest) if s1[4..8] != [0; 4] => {
                let (_, server_digest) = find_digest(&s1, &SERVER_KEY_TEXT[..])
                    .ok_or(HandshakeError::ServerDigestMismatch)?;
                let server_key = full_key::<68>(SERVER_KEY_TEXT);
                let key = hmac_sha256(&server_key, &[&c1_digest]);
                let sig = hmac_sha256(&key, &[&s2[..SIGNED_LEN]]);
                if !bool::from(sig.ct_eq(&s2[SIGNED_LEN..])) {
                    return Err(HandshakeError::ServerSignatureMismatch);
                }
                let player_key = full_key::<62>(PLAYER_KEY_TEXT);
                signed_response(&self.random, &player_key, &server_digest)
            }
            // Simple form: C2 echoes S1 (RTMP 1.0 §5.2.4).
            _ => s1,
        };
        out.put_slice(&c2);
        self.state = ClientState::Done;
        Ok(true)
    }
}

#[cfg(fuzzing)]
/// Fuzz harness: feed arbitrary bytes to a server handshake, in two pieces.
pub fn fuzz_server(data: &[u8]) {
    let mut hs = ServerHandshake::new([0x5a; RANDOM_SIZE]);
    let mut out = BytesMut::new();
    let split = data
        .first()
        .map_or(0, |&b| usize::from(b) * 8)
        .min(data.len());
    let mut buf = BytesMut::from(&data[..split]);
    if hs.handle_input(&mut buf, &mut out).is_err() {
        return;
    }
    buf.extend_from_slice(&data[split..]);
    let _ = hs.handle_input(&mut buf, &mut out);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn random(seed: u8) -> [u8; RANDOM_SIZE] {
        let mut r = [0u8; RANDOM_SIZE];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        r
    }

    fn run(client_digest: bool) -> (ServerHandshake, ClientHandshake) {
        let mut c_out = BytesMut::new();
        let mut client = if client_digest {
            ClientHandshake::new(random(1), &mut c_out)
        } else {
            ClientHandshake::new_simple(random(1), &mut c_out)
        };
        let mut server = ServerHandshake::new(random(2));
        let mut s_out = BytesMut::new();
        assert!(!server.handle_input(&mut c_out, &mut s_out).unwrap());
        let mut c2 = BytesMut::new();
        assert!(client.handle_input(&mut s_out, &mut c2).unwrap());
        assert!(server.handle_input(&mut c2, &mut s_out).unwrap());
        assert!(c2.is_empty() && s_out.is_empty());
        (server, client)
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn keys_have_the_published_lengths() {
        assert_eq!(full_key::<62>(PLAYER_KEY_TEXT)[29], b'1');
        assert_eq!(full_key::<62>(PLAYER_KEY_TEXT)[30], 0xf0);
        assert_eq!(full_key::<68>(SERVER_KEY_TEXT)[36], 0xf0);
        assert_eq!(full_key::<68>(SERVER_KEY_TEXT)[67], 0xae);
    }

    #[test]
    fn digest_client_and_server_agree() {
        let (server, _) = run(true);
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
    }

    #[test]
    fn simple_client_gets_an_echo() {
        let (server, _) = run(false);
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
    }

    /// A C1 built by hand from the layout facts: offset bytes 8..12 are zero, so a scheme-0
    /// digest sits at 12..44 and covers bytes 0..12 and 44..1536, keyed with the 30-byte
    /// player key text. The server must find it and answer with an S2 whose last 32 bytes are
    /// HMAC(HMAC(68-byte server key, client digest), S2[..1504]).
    #[test]
    fn hand_built_scheme0_c1_is_detected_and_s2_signed_from_its_digest() {
        let mut c1 = [0u8; PACKET_SIZE];
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        for (i, b) in c1.iter_mut().enumerate().skip(44) {
            *b = (i % 251) as u8;
        }
        let mut covered = c1[..12].to_vec();
        covered.extend_from_slice(&c1[44..]);
        let digest = hmac_sha256(PLAYER_KEY_TEXT, &[&covered]);
        c1[12..44].copy_from_slice(&digest);

        let mut input = BytesMut::new();
        input.put_u8(3);
        input.put_slice(&c1);
        let mut server = ServerHandshake::new(random(7));
        let mut out = BytesMut::new();
        server.handle_input(&mut input, &mut out).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme: 0 }));
        assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
        let s1: [u8; PACKET_SIZE] = out[1..1 + PACKET_SIZE].try_into().unwrap();
        assert!(s1[4] >= 3, "ffmpeg requires S1 version byte >= 3");
        assert!(find_digest(&s1, SERVER_KEY_TEXT).is_some());
        let s2 = &out[1 + PACKET_SIZE..];
        let mut server_key = SERVER_KEY_TEXT.to_vec();
        server_key.extend_from_slice(&KEY_TAIL);
        let key = hmac_sha256(&server_key, &[&digest]);
        assert_eq!(hmac_sha256(&key, &[&s2[..1504]])[..], s2[1504..]);
    }

    #[test]
    fn scheme1_digest_is_detected() {
        let (c1, _) = signed_packet(CLIENT_VERSION, &random(3), Some(PLAYER_KEY_TEXT), 1);
        assert_eq!(find_digest(&c1, PLAYER_KEY_TEXT).map(|d| d.0), Some(1));
    }

    #[test]
    fn forged_c1_digest_falls_back_to_simple() {
        let (mut c1, _) = signed_packet(CLIENT_VERSION, &random(3), Some(PLAYER_KEY_TEXT), 0);
        c1[1000] ^= 1;
        let mut input = BytesMut::new();
        input.put_u8(3);
        input.put_slice(&c1);
        let mut server = ServerHandshake::new(random(7));
        let mut out = BytesMut::new();
        server.handle_input(&mut input, &mut out).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Simple));
        assert_eq!(&out[1 + PACKET_SIZE..], &c1[..]);
    }

    #[test]
    fn wrong_version_is_rejected_at_c0() {
        let mut server = ServerHandshake::new(random(0));
        let mut buf = BytesMut::from(&[6u8][..]);
        assert_eq!(
            server.handle_input(&mut buf, &mut BytesMut::new()),
            Err(HandshakeError::UnsupportedVersion(6))
        );
    }

    #[test]
    fn client_rejects_a_bad_server_signature() {
        let mut c_out = BytesMut::new();
        let mut client = ClientHandshake::new(random(1), &mut c_out);
        let mut server = ServerHandshake::new(random(2));
        let mut s_out = BytesMut::new();
        server.handle_input(&mut c_out, &mut s_out).unwrap();
        let last = s_out.len() - 1;
        s_out[last] ^= 0xff;
        assert_eq!(
            client.handle_input(&mut s_out, &mut BytesMut::new()),
            Err(HandshakeError::ServerSignatureMismatch)
        );
    }
}
