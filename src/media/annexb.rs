//! TODO(annexb): H.264 Annex-B start-code scanning, owned by the fstream/FLV work.
