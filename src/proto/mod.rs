//! Sans-IO protocol codecs and session state machines.
//!
//! Nothing here opens a socket, spawns a task or reads the clock: input arrives as bytes (and,
//! where a protocol needs it, a timestamp passed in), output leaves through `poll_*` methods.
//! A CI check (`tests/layering.rs`) keeps runtime and socket imports out of this tree.

pub mod amf0;
pub mod flv;
pub mod fstream;
pub mod ftl;
pub mod http;
pub mod proxy;
pub mod rtmp;
pub mod rtp;
