//! Wire format, handshake and transports for raft-actor.
//!
//! Not yet implemented: see issue 3. This crate builds so the workspace layout of DESIGN.md holds.
