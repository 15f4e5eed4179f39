//! Sending one remote-write request: HTTP/1.1 over plain TCP or rustls (custom CA, client
//! certificate), the bearer token re-read when its file changes, and the answer sorted
//! into delivered, rejected for good, or worth retrying.
//!
//! No secret reaches a log line: errors name files and statuses, never a token or a key.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use telltale_model::remote;

/// Errors setting up TLS or a destination.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A certificate or key file cannot be used.
    #[error("{flag} {path}: {message}")]
    Pem {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (never the file's contents).
        message: String,
    },
    /// The TLS settings are inconsistent.
    #[error("TLS: {0}")]
    Tls(String),
    /// The URL is not an http(s) URL.
    #[error("--remote-write {url}: {message}")]
    Url {
        /// The URL as given.
        url: String,
        /// Why.
        message: String,
    },
}

/// TLS settings shared by every destination.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// PEM CA bundle that signs the receivers' certificates; the system roots without it.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain, for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key: Option<PathBuf>,
}

fn pem_err(flag: &'static str, path: &Path, message: impl ToString) -> Error {
    Error::Pem {
        flag,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &files.ca {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| pem_err("--tls-ca", ca, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err("--tls-ca", ca, e))?;
            if certs.is_empty() {
                return Err(pem_err("--tls-ca", ca, "no certificate in the file"));
            }
            for c in certs {
                roots.add(c).map_err(|e| pem_err("--tls-ca", ca, e))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for c in native.certs {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err("--tls-cert", cert, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err("--tls-cert", cert, e))?;
            if chain.is_empty() {
                return Err(pem_err("--tls-cert", cert, "no certificate in the file"));
            }
            let pk = PrivateKeyDer::from_pem_file(key)
                .map_err(|_| pem_err("--tls-key", key, "no readable PEM private key"))?;
            builder
                .with_client_auth_cert(chain, pk)
                .map_err(|e| Error::Tls(format!("client certificate and key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(Error::Tls(
            "--tls-cert and --tls-key must be given together".into(),
        )),
    }
}

/// The bearer token, re-read whenever its file's size or modification time changes.
#[derive(Debug)]
struct Token {
    path: PathBuf,
    cached: Mutex<Option<((SystemTime, u64), String)>>,
}

impl Token {
    fn get(&self) -> Result<String, String> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| format!("--remote-write-token-file {}: {e}", self.path.display()))?;
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, t)) = cached.as_ref() {
            if *s == stamp {
                return Ok(t.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("--remote-write-token-file {}: {e}", self.path.display()))?;
        let token = text.trim().to_string();
        *cached = Some((stamp, token.clone()));
        Ok(token)
    }
}

/// The answer to one request.
#[derive(Debug)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// A 4xx other than 429: the receiver will never take this batch.
    Rejected {
        /// The status.
        status: u16,
        /// The start of the receiver's message.
        message: String,
    },
    /// 5xx, 429, or no answer: try again later.
    Retry {
        /// What happened (status or connection error).
        why: String,
        /// The receiver's `Retry-After`, if it sent one in seconds.
        after: Option<Duration>,
    },
}

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// One receiver.
#[derive(Debug)]
pub struct Destination {
    uri: hyper::Uri,
    /// `destination` label: the URL without credentials or query.
    pub name: String,
    client: HttpsClient,
    token: Option<Token>,
    timeout: Duration,
}

impl Destination {
    /// A destination for `url`.
    pub fn new(
        url: &str,
        tls: &TlsFiles,
        token_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let url_err = |message: &str| Error::Url {
            url: redact(url),
            message: message.to_string(),
        };
        let uri: hyper::Uri = url.parse().map_err(|_| url_err("not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(url_err("must start with http:// or https://")),
        }
        let Some(authority) = uri.authority() else {
            return Err(url_err("has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(url_err(
                "credentials in the URL are not supported; use --remote-write-token-file",
            ));
        }
        let name = format!(
            "{}://{}{}",
            uri.scheme_str().unwrap_or("http"),
            authority,
            uri.path()
        );
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(tls)?)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Destination {
            uri,
            name,
            client,
            token: token_file.map(|p| Token {
                path: p.to_owned(),
                cached: Mutex::new(None),
            }),
            timeout,
        })
    }

    /// Sends one snappy-compressed `WriteRequest`.
    pub async fn send(&self, body: Bytes) -> Outcome {
        let mut req = hyper::Request::post(self.uri.clone())
            .header("Content-Type", remote::CONTENT_TYPE)
            .header("Content-Encoding", remote::CONTENT_ENCODING)
            .header("X-Prometheus-Remote-Write-Version", remote::VERSION)
            .header(
                "User-Agent",
                concat!("telltale/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = &self.token {
            match t.get() {
                Ok(token) => req = req.header("Authorization", format!("Bearer {token}")),
                Err(why) => return Outcome::Retry { why, after: None },
            }
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Rejected {
                    status: 0,
                    message: format!("cannot build the request: {e}"),
                }
            }
        };
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status().as_u16();
            let after = resp
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            Ok::<_, hyper_util::client::legacy::Error>((status, after, body.unwrap_or_default()))
        })
        .await;
        match answer {
            Err(_) => Outcome::Retry {
                why: format!("no answer within {:?}", self.timeout),
                after: None,
            },
            Ok(Err(e)) => Outcome::Retry {
                why: connection_error(&e),
                after: None,
            },
            Ok(Ok((status, after, body))) => {
                let message: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                match status {
                    200..=299 => Outcome::Delivered,
                    429 | 500..=599 => Outcome::Retry {
                        why: format!("HTTP {status}: {}", message.trim()),
                        after,
                    },
                    _ => Outcome::Rejected {
                        status,
                        message: message.trim().to_string(),
                    },
                }
            }
        }
    }
}

/// The innermost cause of a client error (hyper's outer message is only "client error").
fn connection_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = s.to_string();
        src = s.source();
    }
    msg
}

/// `url` without anything between `://` and `@`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(a)) if a > s => format!("{}://<redacted>@{}", &url[..s], &url[a + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_leak_credentials() {
        let tls = TlsFiles::default();
        let t = Duration::from_secs(1);
        let e = Destination::new("ftp://x/", &tls, None, t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("http://"), "{e}");
        let e = Destination::new("http://user:s3cret@x/api", &tls, None, t)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        let d = Destination::new("http://h:9/api/v1/write?x=1", &tls, None, t).unwrap();
        assert_eq!(d.name, "http://h:9/api/v1/write");
    }

    #[test]
    fn tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("ca.pem");
        std::fs::write(&bad, "not pem").unwrap();
        let e = tls_config(&TlsFiles {
            ca: Some(bad.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--tls-ca") && e.contains("ca.pem"), "{e}");
        let e = tls_config(&TlsFiles {
            cert: Some(bad),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("together"), "{e}");
    }

    #[test]
    fn token_is_reread_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one\n").unwrap();
        let t = Token {
            path: path.clone(),
            cached: Mutex::new(None),
        };
        assert_eq!(t.get().unwrap(), "one");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(t.get().unwrap(), "second");
    }
}
