//! FTL (Faster Than Light) ingest.
