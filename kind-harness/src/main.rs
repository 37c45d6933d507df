//! The `kind-harness` binary: one subcommand per harness module (see the library's overview).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The replays allocate per node and per decision (the core's verdicts and fits); mimalloc makes
/// them markedly faster than the system allocator without changing any decision.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sliceguard's evidence harness.
#[derive(Debug, Parser)]
#[command(name = "kind-harness", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a production GPU trace through the scheduler and measure placement quality.
    Trace(Box<kind_harness::trace::cli::TraceArgs>),
    /// Run simulation campaigns with fault injection, or serve the simulated cluster.
    Sim(Box<kind_harness::sim::SimArgs>),
    /// Run the conformance scenarios (seed exercises, sharing, ...) on sim, kind or any cluster, with evidence.
    Conformance(Box<kind_harness::conformance::ConformanceArgs>),
    /// Create a kind cluster and deploy sliceguard on it (needs docker, kind, kubectl).
    Up(Box<kind_harness::kind::UpArgs>),
    /// Delete the kind cluster.
    Down(kind_harness::kind::DownArgs),
    /// Audit a live cluster: over-committed GPUs, stuck locks, undecodable annotations (exit 1 if any).
    Audit(Box<kind_harness::audit::AuditArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Trace(args) => kind_harness::trace::cli::run(&args),
        Command::Sim(args) => match kind_harness::sim::run(&args) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        },
        Command::Conformance(args) => {
            return ExitCode::from(kind_harness::conformance::run(&args));
        }
        Command::Audit(args) => return ExitCode::from(kind_harness::audit::run(&args)),
        Command::Up(args) => return kind_exit(kind_harness::kind::up(&args)),
        Command::Down(args) => return kind_exit(kind_harness::kind::down(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn kind_exit(result: Result<(), kind_harness::kind::KindError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.code)
        }
    }
}
