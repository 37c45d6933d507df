//! Running the `kind-harness` binary from the integration tests: one place that builds the command
//! and collects its exit code and output.
#![allow(dead_code)]

use std::process::Command;

/// The `kind-harness` binary Cargo built for these tests, as a command to add arguments to.
pub fn kind_harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kind-harness"))
}

/// Runs `command` to completion: (exit code, or -1 when a signal ended it; stdout; stderr).
pub fn outcome(command: &mut Command) -> (i32, String, String) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
