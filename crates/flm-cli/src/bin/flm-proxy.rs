//! `flm-proxy` — FLM's proxy daemon, started by `flm proxy start`. The composition
//! root lives in `flm_cli::daemon`, sharing its wiring with the `flm` binary.

fn main() -> std::process::ExitCode {
    flm_cli::daemon::main()
}
