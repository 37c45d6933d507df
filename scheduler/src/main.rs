//! The `sliceguard` binary; everything lives in the library's `cli` module.

/// `serve` handles each extender call and watch event with many short-lived allocations (decoded
/// JSON, annotation strings, verdicts) across the runtime's worker threads; with the system
/// allocator, malloc and free were about a third of the service benchmark's profile
/// (`scheduler/benches/service.rs`, which runs with this allocator too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sliceguard::cli::main()
}
