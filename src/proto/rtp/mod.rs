//! TODO(rtp): placeholder owned by the rtp work.
