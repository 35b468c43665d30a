//! Peer benchmark (placeholder until written).

fn main() {}
