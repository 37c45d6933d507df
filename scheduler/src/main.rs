//! The `sliceguard` binary; everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    sliceguard::cli::main()
}
