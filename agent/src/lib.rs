//! The aiscout agent.
//!
//! Module map: grows with the network discovery issue (capture, decode, matching) and the
//! endpoint inventory and daemon issues.
#![deny(unsafe_code)]
