//! `telltale aggregator`: its flags, their layering into the aggregator's options, and
//! running it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};
use serde::Deserialize;

use crate::serve::serve;
use crate::settings::{
    bytes_from_yaml, defaults, explicit, load_file, parse_bytes, parse_bytes_or_zero,
    parse_duration, ConfigError, Failure,
};

/// `telltale aggregator` flags. Every flag may also be set by `TELLTALE_<FLAG>` or in the
/// `--config` file under the flag's name.
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AggregatorArgs {
    /// YAML file with any of these flags as keys.
    #[arg(long, env = "TELLTALE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve the remote-write and query API, /metrics, /healthz and /readyz on.
    #[arg(long, env = "TELLTALE_LISTEN", default_value = "0.0.0.0:9201")]
    pub listen: SocketAddr,

    /// Directory of the WAL and the Parquet partitions.
    #[arg(long, env = "TELLTALE_DATA_DIR", default_value = "./telltale-data")]
    pub data_dir: PathBuf,

    /// How long raw samples are kept (e.g. 90d, 2w).
    #[arg(long, env = "TELLTALE_RETENTION", default_value = "90d", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub retention: Duration,

    /// How long 5-minute rollups (per-series summaries that answer long ranges) are kept.
    #[arg(long = "retention-5m", env = "TELLTALE_RETENTION_5M", default_value = "90d", value_parser = parse_duration)]
    #[serde(with = "humantime_serde", rename = "retention-5m")]
    pub retention_5m: Duration,

    /// How long 1-hour rollups are kept.
    #[arg(long = "retention-1h", env = "TELLTALE_RETENTION_1H", default_value = "365d", value_parser = parse_duration)]
    #[serde(with = "humantime_serde", rename = "retention-1h")]
    pub retention_1h: Duration,

    /// Samples one query may hold in memory at once (a range query is evaluated a block
    /// of steps at a time, so this bounds memory, not the length of its range).
    #[arg(long, env = "TELLTALE_QUERY_MAX_SAMPLES", default_value = "50000000", value_parser = clap::value_parser!(u64).range(1..))]
    pub query_max_samples: u64,

    /// How long one query may run.
    #[arg(long, env = "TELLTALE_QUERY_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,

    /// YAML map of bearer token to the cluster names it may write; without it, every
    /// writer is accepted.
    #[arg(long, env = "TELLTALE_AUTH_TOKENS")]
    pub auth_tokens: Option<PathBuf>,

    /// Billing price table (YAML); used by billing.
    #[arg(long, env = "TELLTALE_PRICES")]
    pub prices: Option<PathBuf>,

    /// Write the in-memory head to Parquet at least this often.
    #[arg(long, env = "TELLTALE_FLUSH_INTERVAL", default_value = "15m", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,

    /// Write the head to Parquet when it holds this many samples.
    #[arg(long, env = "TELLTALE_FLUSH_SAMPLES", default_value = "5000000", value_parser = clap::value_parser!(u64).range(1..))]
    pub flush_samples: u64,

    /// Memory the query cache (Parquet footers, series tables, parsed label sets) may
    /// take; past it the cache starts over (e.g. 256MiB, 1GiB).
    #[arg(long, env = "TELLTALE_QUERY_CACHE_MAX_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    #[serde(deserialize_with = "bytes_from_yaml")]
    pub query_cache_max_bytes: u64,

    /// Refuse remote writes (503, so senders keep the samples in their own queues) while
    /// the WAL holds this many bytes: it grows past a flush's worth only while the object
    /// store does not answer.
    #[arg(long, env = "TELLTALE_WAL_MAX_BYTES", default_value = "8GiB", value_parser = parse_bytes)]
    #[serde(deserialize_with = "bytes_from_yaml")]
    pub wal_max_bytes: u64,

    /// Keep a copy of every Parquet file (day files, rollups, billing records) in an
    /// object store: s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or
    /// file:///dir. The WAL stays on local disk. On an empty --data-dir, the files are
    /// downloaded first. S3 reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ENDPOINT_URL and AWS_ALLOW_HTTP (GCS: GOOGLE_*, Azure: AZURE_*).
    #[arg(long, env = "TELLTALE_OBJECT_STORE")]
    pub object_store: Option<String>,

    /// A setting of the object store client, key=value (repeatable), e.g. region=eu-west-1,
    /// endpoint=http://minio:9000, allow_http=true, timeout=30s.
    #[arg(long = "object-store-option", value_name = "KEY=VALUE", value_parser = parse_option)]
    #[serde(rename = "object-store-option", deserialize_with = "options_from_yaml")]
    pub object_store_option: Vec<(String, String)>,

    /// This aggregator's name among replicas writing to one --object-store (each fed the
    /// same streams): it names their files, and compaction is coordinated through
    /// leases in the bucket. [default: the host name]
    #[arg(long, env = "TELLTALE_REPLICA")]
    pub replica: Option<String>,

    /// Run as a query node: serve the query API, remote read and billing from the files of
    /// --object-store (followed every --refresh-interval) without taking writes (remote
    /// write answers 405), flushing, compacting, settling or deleting anything.
    #[arg(long, env = "TELLTALE_READ_ONLY")]
    pub read_only: bool,

    /// With --read-only: how often the bucket is listed for new and removed files.
    #[arg(long, env = "TELLTALE_REFRESH_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,

    /// With --read-only: disk the page cache of object store blocks read by queries may
    /// take under --data-dir (e.g. 4GiB; 0 keeps blocks in memory only). Files are not
    /// downloaded whole: queries read the footers and pages they need.
    #[arg(long, env = "TELLTALE_CACHE_MAX_BYTES", default_value = "4GiB", value_parser = parse_bytes_or_zero)]
    #[serde(deserialize_with = "bytes_from_yaml")]
    pub cache_max_bytes: u64,

    /// With --read-only: the ingesting aggregators (http://host:9201, comma-separated),
    /// asked over remote read for their newest samples, so answers reach now before
    /// those samples are in the bucket.
    #[arg(long, env = "TELLTALE_INGESTERS", value_delimiter = ',')]
    pub ingesters: Vec<String>,

    /// How far back from now the ingesters are asked; older samples must be in the
    /// bucket (an ingester uploads within a flush interval while the bucket answers).
    #[arg(long, env = "TELLTALE_INGESTER_WINDOW", default_value = "3h", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub ingester_window: Duration,
}

/// A config file's `object-store-option: [key=value, ...]`.
fn options_from_yaml<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<(String, String)>, D::Error> {
    let all: Vec<String> = Vec::deserialize(d)?;
    all.iter()
        .map(|s| parse_option(s).map_err(serde::de::Error::custom))
        .collect()
}

/// `key=value`.
fn parse_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

impl Default for AggregatorArgs {
    fn default() -> Self {
        let mut args: AggregatorArgs = defaults("aggregator");
        args.config = None;
        args
    }
}

/// The aggregator's settings after layering flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Options for the aggregator library.
    pub opts: telltale_aggregator::Options,
}

/// Layers `cli` (whose sources `m` records) over the `--config` file and defaults.
pub fn config(cli: AggregatorArgs, m: &ArgMatches) -> Result<AggregatorConfig, ConfigError> {
    let file: AggregatorArgs = load_file(cli.config.as_deref())?;
    macro_rules! pick {
        ($($field:ident),*) => {
            AggregatorArgs {
                config: cli.config.clone(),
                $($field: if explicit(m, stringify!($field)) { cli.$field.clone() } else { file.$field.clone() },)*
            }
        };
    }
    let a = pick!(
        listen,
        data_dir,
        retention,
        retention_5m,
        retention_1h,
        query_max_samples,
        query_timeout,
        auth_tokens,
        prices,
        flush_interval,
        flush_samples,
        query_cache_max_bytes,
        wal_max_bytes,
        object_store,
        object_store_option,
        replica,
        read_only,
        refresh_interval,
        cache_max_bytes,
        ingesters,
        ingester_window
    );
    let replica = a.replica.clone().unwrap_or_else(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    });
    if !telltale_aggregator::store::layout::valid_replica(&replica) {
        return Err(ConfigError::Invalid {
            key: "replica",
            message: format!(
                "{replica:?}: use letters, digits, '.', '_' and '-', at most 63 (set --replica)"
            ),
        });
    }
    if !a.ingesters.is_empty() && !a.read_only {
        return Err(ConfigError::Invalid {
            key: "ingesters",
            message: "only a --read-only query node asks ingesters".into(),
        });
    }
    if let Some(bad) = a
        .ingesters
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(ConfigError::Invalid {
            key: "ingesters",
            message: format!("{bad:?} is not an http:// or https:// URL"),
        });
    }
    if !a.object_store_option.is_empty() && a.object_store.is_none() {
        return Err(ConfigError::Invalid {
            key: "object-store-option",
            message: "given without --object-store".into(),
        });
    }
    let object_store =
        a.object_store
            .clone()
            .map(|url| telltale_aggregator::store::bucket::Target {
                url,
                options: a.object_store_option.clone(),
            });
    if let Some(t) = &object_store {
        t.check().map_err(|e| ConfigError::Invalid {
            key: "object-store",
            message: e.to_string(),
        })?;
    }
    if let Some(p) = &a.auth_tokens {
        if !p.is_file() {
            return Err(ConfigError::Invalid {
                key: "auth-tokens",
                message: format!("{} is not a file", p.display()),
            });
        }
    }
    Ok(AggregatorConfig {
        listen: a.listen,
        opts: telltale_aggregator::Options {
            data_dir: a.data_dir,
            flush_interval: a.flush_interval,
            flush_samples: a.flush_samples as usize,
            query_cache_max_bytes: usize::try_from(a.query_cache_max_bytes).unwrap_or(usize::MAX),
            clock: std::sync::Arc::new(telltale_model::time::SystemClock),
            retention: a.retention,
            retention_5m: a.retention_5m,
            retention_1h: a.retention_1h,
            query_limits: telltale_aggregator::query::Limits {
                max_samples: usize::try_from(a.query_max_samples).unwrap_or(usize::MAX),
                timeout: a.query_timeout,
                ..Default::default()
            },
            auth_tokens: a.auth_tokens,
            wal_max_bytes: a.wal_max_bytes,
            replica,
            read_only: a.read_only,
            refresh_interval: a.refresh_interval,
            cache_max_bytes: a.cache_max_bytes,
            ingesters: a.ingesters,
            ingester_window: a.ingester_window,
            object_store,
            prices: match &a.prices {
                Some(p) => telltale_aggregator::billing::Prices::load(p).map_err(|e| {
                    ConfigError::Invalid {
                        key: "prices",
                        message: e.to_string(),
                    }
                })?,
                None => Default::default(),
            },
        },
    })
}

/// Runs the aggregator until SIGTERM or Ctrl-C; ingest decodes and validates on every
/// core, the WAL has its own thread.
pub fn run(args: AggregatorArgs, m: &ArgMatches) -> Result<(), Failure> {
    let cfg = config(args, m).map_err(Failure::Usage)?;
    serve(|cancel| telltale_aggregator::run(cfg.opts, cfg.listen, cancel, |_| {}))
}
