//! The `tidewater` command: see `tidewater --help`.

fn main() -> std::process::ExitCode {
    tidewater_cli::cli::main()
}
