//! `flm-bench`: argument parsing and runtime set-up; the work is in the library.

mod cli;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser as _;
use flm_bench::{load, summary, upstream};

use crate::cli::{Cli, Command, FakeUpstreamArgs, LoadArgs, SummarizeArgs};

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("flm-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::FakeUpstream(args) => fake_upstream(args).map(|()| ExitCode::SUCCESS),
        Command::Load(args) => run_load(args).map(|()| ExitCode::SUCCESS),
        Command::Summarize(args) => summarize(args),
    }
}

fn fake_upstream(args: FakeUpstreamArgs) -> anyhow::Result<()> {
    // One worker: the engine should take one core at most, leaving the other to the
    // load generator (direct path) or to the proxy.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind((args.host, args.port))
            .await
            .with_context(|| format!("bind {}:{}", args.host, args.port))?;
        println!("listening on http://{}", listener.local_addr()?);
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        upstream::serve(listener, shutdown).await
    })
}

fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let seconds = |s: f64, what: &str| {
        if s.is_finite() && s > 0.0 {
            Ok(Duration::from_secs_f64(s))
        } else {
            bail!("`{what}` must be a positive number of seconds")
        }
    };
    let cfg = load::LoadConfig {
        url: args.url,
        key: args.key,
        model: args.model,
        concurrency: args.concurrency,
        requests: args.requests,
        duration: args
            .duration_secs
            .map(|s| seconds(s, "--duration-secs"))
            .transpose()?,
        stream: args.stream,
        warmup: args.warmup,
        timeout: seconds(args.timeout_secs, "--timeout-secs")?,
        label: args.label,
        api: if args.api == "responses" {
            load::Api::Responses
        } else {
            load::Api::Chat
        },
    };
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let report = rt.block_on(load::run(cfg))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn summarize(args: SummarizeArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.results)
        .with_context(|| format!("read {}", args.results.display()))?;
    let reports = summary::parse_lines(&text)?;
    let extras = summary::Extras {
        rss_idle_kib: args.rss_idle_kib,
        rss_c64_kib: args.rss_c64_kib,
    };
    let s = summary::summarize(&reports, &extras)?;
    print!("{}", s.markdown);
    if s.failures > 0 {
        eprintln!(
            "flm-bench: {} failed requests: the figures are not valid",
            s.failures
        );
        return Ok(ExitCode::from(1));
    }
    if args.enforce && !s.missed.is_empty() {
        eprintln!("flm-bench: targets missed: {}", s.missed.join("; "));
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
