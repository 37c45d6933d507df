//! The `sliceguard` command line: a thin shell over the core.
//!
//! | command | does |
//! |---|---|
//! | `fleet` | prints a fake GPU fleet as a Kubernetes `NodeList` |
//! | `place` | decides where pods would go on given nodes, and why not elsewhere |
//! | `decode` | parses one annotation value and prints it as JSON |
//! | `serve` | runs the scheduler against a cluster: webhook (HTTPS), extender (filter, bind), metrics (feature `server`) |
//! | `register` | writes fake GPU inventories onto a cluster's nodes (feature `server`) |
//!
//! Exit codes: 0 when a decision was made (Pending included), 2 for bad input or usage, 1 for
//! anything else.

mod decode;
mod fleet;
pub mod input;
pub mod place;
mod register;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// sliceguard: a compact, HAMi-compatible scheduler for fractional GPUs.
///
/// Pods ask for `nvidia.com/gpu`, `nvidia.com/gpumem` (MiB per GPU) and `nvidia.com/gpucores`
/// (percent of a GPU); sliceguard picks the node and the exact devices with HAMi v2.10's rules,
/// reason strings and annotations.
#[derive(Debug, Parser)]
#[command(name = "sliceguard", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Fleet(fleet::FleetArgs),
    Place(place::PlaceArgs),
    Decode(decode::DecodeArgs),
    Serve(Box<serve::ServeArgs>),
    Register(register::RegisterArgs),
}

/// A failure the CLI reports: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code (2 for bad input).
    pub code: u8,
    /// What went wrong, naming the input.
    pub message: String,
}

impl Failure {
    /// Bad input: exit 2.
    pub fn input(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }
}

impl From<input::InputError> for Failure {
    fn from(e: input::InputError) -> Self {
        Failure::input(e)
    }
}

/// Runs the CLI with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fleet(args) => fleet::run(&args),
        Command::Place(args) => place::run(&args),
        Command::Decode(args) => decode::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Register(args) => register::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Writes to standard output, treating a closed pipe (`| head`) as success.
pub(crate) fn print(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure {
            code: 1,
            message: format!("cannot write output: {e}"),
        }),
    }
}

/// Output formats shared by the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Renders a serializable value as JSON or YAML.
pub(crate) fn render<T: serde::Serialize>(value: &T, format: Format) -> Result<String, Failure> {
    let internal = |e: String| Failure {
        code: 1,
        message: format!("cannot render output: {e}"),
    };
    match format {
        Format::Yaml => serde_saphyr::to_string(value).map_err(|e| internal(e.to_string())),
        _ => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| internal(e.to_string())),
    }
}
