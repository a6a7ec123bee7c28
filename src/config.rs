//! Typed TOML configuration.
