//! The `tidewater-lab` command: see `tidewater-lab --help` and docs/lab.md.

mod commands;

fn main() -> std::process::ExitCode {
    commands::main()
}
