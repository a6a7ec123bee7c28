//! TODO(rtmp): placeholder owned by the rtmp work.
