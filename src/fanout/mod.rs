//! Fan-out engine: stream registry, per-core rings (the GOP cache), watcher cursors and the slow-watcher policy. No IO.
