//! TODO(amf0): placeholder owned by the amf0 work.
