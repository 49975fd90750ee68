//! Vector search over the tools registry (filled in with the index).
fn main() {}
