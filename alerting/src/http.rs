//! One HTTP client for everything alerting talks to: the query API, webhooks and
//! Alertmanager. HTTP/1.1 over plain TCP or rustls with the system's roots
//! (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured), a timeout per request.
//!
//! It promises that every request ends within its timeout and that a failure says
//! whether trying again may help ([`Error::retryable`]).

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as Hyper;
use hyper_util::rt::TokioExecutor;

/// A failed request: worth retrying unless the receiver said the request is wrong.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The request could not be built (bad URL).
    #[error("{url}: {message}")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// No answer: connection refused, reset, TLS failure, timeout. Retryable.
    #[error("{url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        message: String,
    },
    /// An answer other than 2xx.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
}

impl Error {
    /// Whether trying again later may succeed (no answer, 5xx, 429).
    pub fn retryable(&self) -> bool {
        match self {
            Error::Request { .. } => false,
            Error::Unreachable { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
        }
    }
}

/// A cheap-to-clone HTTP client.
#[derive(Clone)]
pub struct Client {
    inner: Hyper<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("http::Client")
    }
}

impl Client {
    /// A client trusting the system's roots (none if they cannot be read: https fails,
    /// http works).
    pub fn new() -> Client {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for c in found.certs {
            let _ = roots.add(c);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let tls = match tls {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "TLS setup failed; https receivers will fail");
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("TLS 1.2 is supported by ring")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Client {
            inner: Hyper::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// `GET url`, the body on 2xx.
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, Error> {
        self.send_with("GET", url, &[], Vec::new(), timeout).await
    }

    /// `POST url` with a body of `content_type`, the answer's body on 2xx.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        self.send_with(
            "POST",
            url,
            &[("content-type", content_type)],
            body,
            timeout,
        )
        .await
    }

    /// One request with these headers and body, the answer's body on 2xx.
    pub async fn send_with(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let mut req = hyper::Request::builder().method(method).uri(url).header(
            "user-agent",
            concat!("telltale-alerting/", env!("CARGO_PKG_VERSION")),
        );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Request {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        let unreachable = |message: String| Error::Unreachable {
            url: url.to_owned(),
            message,
        };
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| unreachable(source_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            if (200..300).contains(&status) {
                Ok(body)
            } else {
                let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                Err(Error::Status {
                    url: url.to_owned(),
                    status,
                    body: text,
                })
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// An error with its causes, `a: b: c` (hyper's and lettre's top-level messages alone
/// say little).
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
