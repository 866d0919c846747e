//! The shell's input syntax (placeholder).
