//! What the live tests share.

pub(crate) mod calls;
