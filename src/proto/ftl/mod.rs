//! TODO(ftl): placeholder owned by the ftl work.
