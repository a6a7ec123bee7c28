//! TODO(flv): placeholder owned by the flv work.
