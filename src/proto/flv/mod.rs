//! PLACEHOLDER until the flvfs branch merges.
use bytes::{BufMut, BytesMut};
use crate::media::MediaKind;
pub fn write_tag(out: &mut BytesMut, kind: MediaKind, timestamp: u32, payload: &[u8]) {
    out.put_u8(kind.type_id());
    out.put_uint(payload.len() as u64, 3);
    out.put_uint((timestamp & 0xff_ffff) as u64, 3);
    out.put_u8((timestamp >> 24) as u8);
    out.put_uint(0, 3);
    out.put_slice(payload);
    out.put_u32(payload.len() as u32 + 11);
}
