//! Discovery (being written).
