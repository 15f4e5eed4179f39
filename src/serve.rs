//! Running a role: a tokio runtime, a cancellation token that SIGTERM or Ctrl-C cancels,
//! and the log format.

use tokio_util::sync::CancellationToken;

use crate::settings::Failure;

/// Runs a role's server on a runtime with a worker per core until SIGTERM or Ctrl-C.
pub fn serve<E, F>(run: impl FnOnce(CancellationToken) -> F) -> Result<(), Failure>
where
    E: std::error::Error + 'static,
    F: std::future::Future<Output = Result<(), E>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        run(cancel).await
    })
    .map_err(|e| Failure::Runtime(e.into()))
}

/// Cancels `cancel` on SIGTERM or Ctrl-C.
pub async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

/// Logs to stderr, filtered by `TELLTALE_LOG` (`info` without it).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // kube-client logs every failed request at ERROR; the collector reports Kubernetes
    // health itself, once per change, so the client's own lines are off unless asked for.
    // The object store client logs each retry at INFO; the aggregator says once per change
    // whether the bucket answers, so the client's lines start at WARN.
    let filter = EnvFilter::try_from_env("TELLTALE_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,kube_client=off,kube_runtime=off,object_store=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
