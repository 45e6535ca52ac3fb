//! Unit tests of the replication machine.
