//! Where the bucket is (`--object-store` and its options) and the client that reaches
//! it: S3, GCS and Azure through `object_store`, or a local directory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig};

/// Where the bucket is and how to reach it: `--object-store` and its
/// `--object-store-option key=value` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///dir`.
    pub url: String,
    /// Settings of the object store client, as `object_store` names them (`region`,
    /// `endpoint`, `allow_http`, `timeout`, ...).
    pub options: Vec<(String, String)>,
}

impl Target {
    /// Checks the URL and options as the client would take them (no request is made):
    /// for a usage error at start instead of a failure later.
    pub fn check(&self) -> Result<(), Error> {
        connect(self).map(|_| ())
    }
}

impl fmt::Debug for Target {
    /// The URL and the option names; values may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.options.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("options", &keys)
            .finish()
    }
}

/// Errors of the object store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--object-store` or one of its options is not usable.
    #[error("--object-store {url}: {message}")]
    Config {
        /// The URL given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An operation on the bucket failed.
    #[error("object store: {op} {key}: {source}")]
    Store {
        /// What was tried.
        op: &'static str,
        /// On which key.
        key: String,
        /// Why it failed.
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Client defaults: a bucket that does not answer fails an operation within about a
/// minute (the store retries it later), instead of `object_store`'s three.
fn client_defaults() -> (ClientOptions, RetryConfig) {
    let client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60));
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    (client, retry)
}

/// The store and key prefix of `target`. S3, GCS and Azure settings come from their
/// usual environment variables (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then from the options;
/// an option the client does not know is an error naming it.
pub(super) fn connect(target: &Target) -> Result<(Arc<dyn ObjectStore>, Key), Error> {
    let bad = |message: String| Error::Config {
        url: target.url.clone(),
        message,
    };
    let url = url::Url::parse(&target.url).map_err(|e| bad(e.to_string()))?;
    const SCHEMES: &str =
        "use s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or file:///dir";
    let (scheme, prefix) = ObjectStoreScheme::parse(&url)
        .map_err(|_| bad(format!("not an object store URL: {SCHEMES}")))?;
    fn built<T: ObjectStore>(
        r: object_store::Result<T>,
        bad: impl Fn(String) -> Error,
    ) -> Result<Arc<dyn ObjectStore>, Error> {
        Ok(Arc::new(r.map_err(|e| bad(e.to_string()))?))
    }
    let (client, retry) = client_defaults();
    // The HTTPS client's cryptography: ring, as everywhere else in Telltale (a provider
    // installed before is kept).
    let _ = rustls::crypto::ring::default_provider().install_default();
    macro_rules! configured {
        ($builder:expr, $key:ty, $env:literal) => {{
            let mut b = $builder
                .with_client_options(client)
                .with_retry(retry)
                .with_url(target.url.clone());
            let from_env = std::env::vars().filter(|(k, _)| k.starts_with($env));
            for (k, v) in from_env {
                if let Ok(key) = k.to_ascii_lowercase().parse::<$key>() {
                    b = b.with_config(key, v);
                }
            }
            for (k, v) in &target.options {
                let key = k
                    .to_ascii_lowercase()
                    .parse::<$key>()
                    .map_err(|_| bad(format!("unknown option {k:?}")))?;
                b = b.with_config(key, v.clone());
            }
            b
        }};
    }
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::Local => {
            if let Some((k, _)) = target.options.first() {
                return Err(bad(format!("option {k:?} does not apply to file://")));
            }
            let dir = url
                .to_file_path()
                .map_err(|()| bad("not a local directory".into()))?;
            std::fs::create_dir_all(&dir).map_err(|e| bad(format!("{}: {e}", dir.display())))?;
            let store = built(LocalFileSystem::new_with_prefix(&dir), bad)?;
            return Ok((store, Key::default()));
        }
        ObjectStoreScheme::AmazonS3 => built(
            configured!(AmazonS3Builder::new(), AmazonS3ConfigKey, "AWS_").build(),
            bad,
        )?,
        ObjectStoreScheme::GoogleCloudStorage => built(
            configured!(GoogleCloudStorageBuilder::new(), GoogleConfigKey, "GOOGLE_").build(),
            bad,
        )?,
        ObjectStoreScheme::MicrosoftAzure => built(
            configured!(MicrosoftAzureBuilder::new(), AzureConfigKey, "AZURE_").build(),
            bad,
        )?,
        _ => return Err(bad(format!("not an object store URL: {SCHEMES}"))),
    };
    Ok((store, prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target(url: &str, options: &[(&str, &str)]) -> Target {
        Target {
            url: url.into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn bad_targets_are_named() {
        for (t, words) in [
            (target("not a url", &[]), "not a url"),
            (target("ftp://x/y", &[]), "use s3://"),
            (
                target("s3://b/p", &[("no_such_option", "1")]),
                "unknown option \"no_such_option\"",
            ),
        ] {
            let e = connect(&t).err().unwrap().to_string();
            assert!(e.contains(words), "{e}");
        }
        let (_, prefix) = connect(&target("s3://bucket/some/prefix", &[("region", "x")])).unwrap();
        assert_eq!(prefix.as_ref(), "some/prefix");
        let debug = format!("{:?}", target("s3://b", &[("secret_access_key", "hush")]));
        assert!(!debug.contains("hush"), "{debug}");
    }
}
