//! `flm-emulator`: runs one emulated engine until SIGTERM / SIGINT.

mod cli;

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use flm_testkit::{EmulatedModel, Emulator, EmulatorOptions};

use crate::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let models = cli
        .models
        .iter()
        .filter(|n| !n.is_empty())
        .map(EmulatedModel::chat)
        .chain(
            cli.embedding_models
                .iter()
                .filter(|n| !n.is_empty())
                .map(EmulatedModel::embedding),
        )
        .collect();
    let opts = EmulatorOptions {
        models,
        port: cli.port.unwrap_or_else(|| cli.kind.default_port()),
        bind: cli.bind,
        chunk_delay: Duration::from_millis(cli.chunk_delay_ms),
        api_key: cli.api_key,
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start(cli.kind, opts)
        .await
        .with_context(|| format!("cannot bind {}", cli.bind))?;

    // Tests wait for this exact line, so write it in one piece and flush it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on http://{}", emulator.addr())?;
    stdout.flush()?;
    drop(stdout);

    wait_for_signal().await?;
    emulator.shutdown().await.context("shutting down")?;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await.context("waiting for ctrl-c")
}
