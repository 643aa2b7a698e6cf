//! `infergate-runner`: the binary. See the library crate for the layout.
//!
//! Start-up order: parse flags → open the model folder and tokenizer →
//! bind and serve (`/health` answers, `/v1/*` and `/ready` say 503) → load
//! ONNX Runtime and the session on the engine thread, warm up → ready.
//! SIGINT/SIGTERM: stop accepting, finish streams in flight (bounded by
//! `--drain-timeout-secs`), stop the engine, exit.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use infergate_runner::cli::Cli;
use infergate_runner::server::{self, Signing};
use infergate_runner::App;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let opts = cli.options()?;
    if matches!(opts.signing, Signing::Disabled) {
        tracing::warn!("!!! --insecure-dev: /v1/* requests are NOT authenticated; never expose this runner !!!");
    }
    let mut app = App::new(opts)?;
    let addr = SocketAddr::new(cli.host, cli.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    tracing::info!(
        "listening on http://{} (model {})",
        listener.local_addr()?,
        app.state.model_id
    );

    let (stop_tx, mut stop_rx) = watch::channel(false);
    let mut drain_rx = stop_rx.clone();
    let server = tokio::spawn(server::serve(listener, app.state.clone(), async move {
        let _ = drain_rx.wait_for(|s| *s).await;
    }));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let (engine_thread, loaded) = app.start_engine();
    tokio::select! {
        res = loaded => match res {
            Ok(Ok(info)) => tracing::info!(
                "ready: device {}, warm-up inference took {} ms",
                info.device,
                info.warmup.as_millis()
            ),
            Ok(Err(e)) => anyhow::bail!("loading failed: {e}"),
            Err(_) => anyhow::bail!("the engine thread stopped while loading"),
        },
        _ = stop_rx.wait_for(|s| *s) => {
            tracing::info!("stopped while loading");
            return Ok(());
        }
    }

    let _ = stop_rx.wait_for(|s| *s).await;
    let timeout = cli.drain_timeout();
    match tokio::time::timeout(timeout, server).await {
        Ok(Ok(Ok(()))) => tracing::info!("all requests drained"),
        Ok(Ok(Err(e))) => tracing::error!("server error: {e}"),
        Ok(Err(e)) => tracing::error!("server task failed: {e}"),
        Err(_) => tracing::warn!(
            "drain timeout of {}s reached; exiting with streams still open",
            timeout.as_secs()
        ),
    }
    // The last engine handle goes with the state: the engine finishes what
    // it holds and stops.
    drop(app);
    let _ = tokio::task::spawn_blocking(move || engine_thread.join()).await;
    tracing::info!("bye");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
