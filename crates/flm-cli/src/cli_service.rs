//! Command-line grammar of `flm service …` and of the hidden `flm __generate-docs`
//! (clap). Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `flm service …`
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Run the proxy as a systemd user service: write
    /// ~/.config/systemd/user/flm.service (the proxy in the foreground, restarted on
    /// failure), then `systemctl --user enable` and start it when systemd runs.
    ///
    /// Without a running systemd the unit is written and the commands to run later are
    /// printed. A user service starts when you log in; `loginctl enable-linger $USER`
    /// starts it at boot.
    Install(ServiceInstallArgs),
    /// Stop and disable the user service and remove its unit file (data is kept).
    Uninstall(ServiceUninstallArgs),
    /// Show the unit file in use and whether the service is enabled and active.
    Status,
}

/// Options of `flm service install`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  flm service install\n  flm service install --port 9000 --bind 0.0.0.0\n  flm service install --no-start"
)]
pub struct ServiceInstallArgs {
    /// HTTP port of the proxy [default: the `proxy.port` setting, 8780]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Listen address of the proxy [default: 127.0.0.1]. 0.0.0.0 exposes it to the
    /// network: only do that on purpose.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// Write the unit and enable it, but do not start it now.
    #[arg(long)]
    pub no_start: bool,
    /// Only write the unit file; print the systemctl commands instead of running them.
    #[arg(long)]
    pub no_systemctl: bool,
    /// Replace a flm.service that FLM did not write.
    #[arg(long)]
    pub force: bool,
}

/// Options of `flm service uninstall`.
#[derive(Debug, Args)]
pub struct ServiceUninstallArgs {
    /// Only remove the files; print the systemctl commands instead of running them.
    #[arg(long)]
    pub no_systemctl: bool,
}

/// The first argument that selects [`GenerateDocsArgs`]. It is not a subcommand of
/// [`crate::cli::Cli`] so that it stays out of the completions and man pages it writes.
pub const GENERATE_DOCS: &str = "__generate-docs";

/// flm __generate-docs — writes FLM's man pages, shell completions and systemd user
/// unit from the clap definitions of this binary (used by scripts/package.sh).
#[derive(Debug, Parser)]
#[command(name = "flm __generate-docs", version = crate::build_info::VERSION)]
pub struct GenerateDocsArgs {
    /// Output directory: man pages go to DIR/man, completions to DIR/completions
    /// (flm.bash, _flm, flm.fish), the systemd user unit to DIR/systemd/flm.service.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// The `flm` path written into the user unit's ExecStart.
    #[arg(long, value_name = "PATH", default_value = "/usr/bin/flm")]
    pub bin_path: PathBuf,
}
