//! Fan-out engine: stream registry, per-core rings (the GOP cache), watcher cursors and the
//! slow-watcher policy. No IO: the server drives it with frames, wakers and timestamps.
//!
//! The path of a frame: a [`Publisher`] rebases its timestamp and serialises it once into an
//! [`EncodedFrame`]; its own core appends it to the stream's local [`Ring`], and every other
//! core receives the same `Arc` through one lock-free hop ([`registry`]) and appends it to its
//! own ring. Each [`Watcher`] is a cursor into its core's ring: appending a frame costs nothing
//! per watcher beyond one wake, and a watcher's write batch is a list of refcount clones.

pub mod encoded;
pub mod hub;
pub mod publisher;
pub mod registry;
pub mod ring;
pub mod trace;
pub mod wake;

pub use encoded::{Content, EncodedFrame, Variant};
pub use hub::{CoreHub, LocalStream, StreamState, Watcher};
pub use publisher::{Publisher, Superseded};
pub use registry::{PublishError, PublishPolicy, Registry, StreamMsg, StreamShared};
pub use ring::{AudioMode, Cursor, Egress, Fill, Ring, RingLimits};
pub use wake::DeferredWakes;
