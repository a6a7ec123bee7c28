//! The only code that touches sockets and the runtime.
