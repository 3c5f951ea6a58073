//! Usher conformance suite harness.
