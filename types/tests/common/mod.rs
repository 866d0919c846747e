//! What the live tests share.

#[rustfmt::skip]
pub(crate) mod calls;
