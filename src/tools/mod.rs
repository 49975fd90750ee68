//! Tools of the gateway: the built-in calculator, the embedders and the vector index of the
//! tools registry.

pub mod calculator;
pub mod embedder;
pub mod index;
