//! PLACEHOLDER until the rtmp branch merges.
use bytes::{BufMut, BytesMut};
pub fn encoded_len(timestamp: u32, len: usize, chunk_size: usize) -> usize {
    let ext = if timestamp >= 0xff_ffff { 4 } else { 0 };
    12 + ext + len + (len.saturating_sub(1) / chunk_size) * (1 + ext)
}
pub fn encode_message(out: &mut BytesMut, csid: u32, timestamp: u32, type_id: u8, msid: u32, payload: &[u8], chunk_size: usize) {
    let ext = timestamp >= 0xff_ffff;
    out.put_u8(csid as u8);
    let ts = if ext { 0xff_ffff } else { timestamp };
    out.put_uint(ts as u64, 3);
    out.put_uint(payload.len() as u64, 3);
    out.put_u8(type_id);
    out.put_u32_le(msid);
    if ext { out.put_u32(timestamp); }
    for (i, c) in payload.chunks(chunk_size).enumerate() {
        if i > 0 { out.put_u8(0xc0 | csid as u8); if ext { out.put_u32(timestamp); } }
        out.put_slice(c);
    }
}
