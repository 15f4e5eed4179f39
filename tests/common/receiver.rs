//! A remote-write receiver for tests: decodes every request with the model's wire types,
//! answers with the status the test sets, and keeps what it accepted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use telltale_model::remote::WriteRequest;

/// One accepted sample.
#[derive(Debug, Clone)]
pub struct Got {
    pub labels: BTreeMap<String, String>,
    pub ts: i64,
    pub value: f64,
}

impl Got {
    pub fn name(&self) -> &str {
        self.labels.get("__name__").map_or("", String::as_str)
    }
}

/// One request as seen: the status answered, its samples, and a hash of its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub status: u16,
    pub samples: usize,
    pub body_hash: u64,
}

#[derive(Default)]
struct Inner {
    status: u16,
    auth: Vec<String>,
    accepted: Vec<Got>,
    requests: Vec<Request>,
    bad_headers: Vec<String>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn write(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut g = inner.lock().unwrap();
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        g.auth.push(a.to_string());
    }
    for (h, want) in [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "snappy"),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ] {
        if headers.get(h).and_then(|v| v.to_str().ok()) != Some(want) {
            g.bad_headers.push(format!("{h}: {:?}", headers.get(h)));
        }
    }
    let req = match WriteRequest::decode_body(&body) {
        Ok(r) => r,
        Err(e) => {
            g.bad_headers.push(format!("body: {e}"));
            return StatusCode::BAD_REQUEST;
        }
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&body[..], &mut h);
    let status = g.status;
    g.requests.push(Request {
        status,
        samples: req.samples(),
        body_hash: std::hash::Hasher::finish(&h),
    });
    if (200..300).contains(&status) {
        for ts in req.timeseries {
            let labels: BTreeMap<String, String> =
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            for s in ts.samples {
                g.accepted.push(Got {
                    labels: labels.clone(),
                    ts: s.timestamp,
                    value: s.value,
                });
            }
        }
    }
    StatusCode::from_u16(status).unwrap()
}

type Stopped = tokio::sync::oneshot::Receiver<()>;

impl Receiver {
    /// Runs `serve(listener, app, stopped, state)` on its own thread and runtime, with
    /// `app` answering `/api/v1/write`; returns once the ephemeral port is bound.
    fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, axum::Router, Stopped, Arc<Mutex<Inner>>) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let inner = Arc::new(Mutex::new(Inner {
            status: 204,
            ..Default::default()
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = inner.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/api/v1/write", post(write))
                    .with_state(state.clone());
                serve(listener, app, stopped, state).await;
            });
        });
        Receiver {
            addr: rx.recv().unwrap(),
            inner,
            stop: Some(stop),
        }
    }

    /// Listens on an ephemeral loopback port, answering 204.
    pub fn start() -> Self {
        Self::spawn(|listener, app, stopped, _| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// The same receiver over TLS: `cert`/`key` (PEM) are its own, and clients must show a
    /// certificate signed by `client_ca`.
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: &std::path::Path,
    ) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(client_ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::spawn(move |listener, app, mut stopped, state| async move {
            loop {
                let (tcp, _) = tokio::select! {
                    a = listener.accept() => a.unwrap(),
                    _ = &mut stopped => return,
                };
                let (acceptor, app, state) = (acceptor.clone(), app.clone(), state.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            state
                                .lock()
                                .unwrap()
                                .bad_headers
                                .push(format!("handshake: {e}"));
                            return;
                        }
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        })
    }

    /// `Authorization` headers seen, in order.
    pub fn auth(&self) -> Vec<String> {
        self.inner.lock().unwrap().auth.clone()
    }

    /// The status every following request is answered with.
    pub fn set_status(&self, status: u16) {
        self.inner.lock().unwrap().status = status;
    }

    /// Samples accepted so far, in arrival order.
    pub fn accepted(&self) -> Vec<Got> {
        self.inner.lock().unwrap().accepted.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Header or body problems seen (should stay empty).
    pub fn problems(&self) -> Vec<String> {
        self.inner.lock().unwrap().bad_headers.clone()
    }
}
