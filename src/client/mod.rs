//! Command-line clients shipped in the `ringcast` binary. Blocking std IO: these are small
//! tools for pipes, not part of the relay, and never run inside the server's runtime.

pub mod fstream;
