//! `flm` — the command-line tool of FLM. Everything lives in the `flm_cli` library,
//! shared with the `flm-proxy` daemon binary.

fn main() -> std::process::ExitCode {
    flm_cli::flm_main()
}
