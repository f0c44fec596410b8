//! The actor runtime and the `Node` API.
//!
//! Not yet implemented: see issue 4. This crate builds so the workspace layout of DESIGN.md holds.
