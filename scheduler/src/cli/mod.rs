//! CLI (placeholder until written).
