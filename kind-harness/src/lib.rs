//! # kind-harness: sliceguard's evidence harness
//!
//! The harness drives sliceguard's scheduler core through workloads and writes the evidence. Each
//! subcommand of the `kind-harness` binary is one module here, so others slot in beside it:
//!
//! | module | subcommand | what it does |
//! |---|---|---|
//! | [`trace`] | `kind-harness trace` | replays a production trace (Alibaba openb, ATC'23 FGD paper) through the core and measures placement quality |
//! | [`sim`] | `kind-harness sim` | seeded simulation campaigns with fault injection in the simulated cluster, and `sim serve` |
//!
//! (`conformance` and `audit` arrive as sibling modules.)

pub mod sim;
pub mod trace;
