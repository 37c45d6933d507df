//! # kind-harness: sliceguard's evidence harness
//!
//! The harness drives sliceguard's scheduler core through workloads and writes the evidence. Each
//! subcommand of the `kind-harness` binary is one module here, so others slot in beside it. It sits
//! on top of every other crate of the workspace, and none of them may depend on it:
//!
//! | module | subcommand | what it does |
//! |---|---|---|
//! | [`trace`] | `kind-harness trace` | replays a production trace (Alibaba openb, ATC'23 FGD paper) through the core and measures placement quality |
//! | [`sim`] | `kind-harness sim` | seeded simulation campaigns with fault injection in the simulated cluster, and `sim serve` |
//! | [`conformance`] | `kind-harness conformance` | the seed's exercises and GPU sharing as scenarios checked by code, on sim, kind or any cluster ([`driver`]), with evidence ([`evidence`]) |
//! | [`kind`] | `kind-harness up` / `down` | a kind cluster with sliceguard deployed (preflight, image, certificates, manifests, fake fleet) |
//! | [`audit`] | `kind-harness audit` | over-committed GPUs, stuck locks and bad annotations on a live cluster |

pub mod audit;
pub mod conformance;
pub mod driver;
pub mod evidence;
pub mod kind;
pub mod sim;
pub mod trace;
