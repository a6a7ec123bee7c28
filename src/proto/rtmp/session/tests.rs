//! Pair tests: a client and a server session joined in memory.
