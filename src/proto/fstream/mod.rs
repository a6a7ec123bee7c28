//! TODO(fstream): placeholder owned by the fstream work.
