//! What the live tests share.

pub mod calls;
