//! `telltale collector`: its flags, their layering into the collector's options, and
//! running it (or `--once`: one snapshot to stdout).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::serve::stop_on_signal;
use crate::settings::{
    bytes_from_yaml, defaults, explicit, load_file, parse_bytes, parse_duration, ConfigError,
    Failure,
};

/// `telltale collector` flags. Every flag may also be set by `TELLTALE_<FLAG>` or in the
/// `--config` file under the flag's name.
#[derive(Debug, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollectorArgs {
    /// YAML file with any of these flags as keys.
    #[arg(long, env = "TELLTALE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to serve /metrics, /healthz and /readyz on.
    #[arg(long, env = "TELLTALE_LISTEN", default_value = "0.0.0.0:9101")]
    pub listen: SocketAddr,

    /// Collect one snapshot, print it in the text format to stdout, and exit.
    #[arg(long, env = "TELLTALE_ONCE")]
    pub once: bool,

    /// `node` label on every series. [default: $NODE_NAME, else the hostname]
    #[arg(long, env = "TELLTALE_NODE_NAME")]
    pub node_name: Option<String>,

    /// `cluster` label on every series.
    #[arg(long, env = "TELLTALE_CLUSTER", default_value = "default")]
    pub cluster: String,

    /// Where procfs is mounted (`/host/proc` in a container).
    #[arg(long, env = "TELLTALE_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Where sysfs is mounted; cgroups are read under `<sys-root>/fs/cgroup`.
    #[arg(long, env = "TELLTALE_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,

    /// Where the host's root filesystem is mounted, for filesystem sizes (statfs of
    /// `<rootfs>/<mountpoint>`).
    #[arg(long, env = "TELLTALE_ROOTFS", default_value = "/")]
    pub rootfs: PathBuf,

    /// Collection interval; sample timestamps are aligned to it (e.g. 15s, 1m).
    #[arg(long, env = "TELLTALE_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub interval: Duration,

    /// Run without Kubernetes: node and raw cgroup metrics only, no pod names.
    #[arg(long, env = "TELLTALE_NO_KUBE")]
    pub no_kube: bool,

    /// Kubeconfig for the API server. [default: $KUBECONFIG, ~/.kube/config, or the
    /// in-cluster service account]
    #[arg(long, env = "TELLTALE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Also export cluster-wide `kube_*` state series (pods so far). Run it in exactly one
    /// replica.
    #[arg(long, env = "TELLTALE_CLUSTER_STATE")]
    pub cluster_state: bool,

    /// Pod annotations exported as `kube_pod_annotations` labels: keys, or prefixes ending
    /// in `*`, comma-separated.
    #[arg(
        long,
        env = "TELLTALE_POD_ANNOTATIONS_ALLOWLIST",
        default_value = "eks.tke.cloud.tencent.com/*"
    )]
    pub pod_annotations_allowlist: String,

    /// Prometheus remote-write 1.0 URL to ship every snapshot to; repeat for several
    /// destinations (each gets its own queue). Comma-separated in the environment.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE", value_delimiter = ',')]
    pub remote_write: Vec<String>,

    /// File holding a bearer token for remote write; re-read when it changes.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_TOKEN_FILE")]
    pub remote_write_token_file: Option<PathBuf>,

    /// PEM CA bundle for the remote-write receivers' certificates. [default: the system's
    /// roots]
    #[arg(long, env = "TELLTALE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS with the receivers (with --tls-key).
    #[arg(long, env = "TELLTALE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "TELLTALE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Directory of the on-disk queues (one per destination).
    #[arg(long, env = "TELLTALE_BUFFER_DIR", default_value = "./telltale-buffer")]
    pub buffer_dir: PathBuf,

    /// Bytes each destination's queue may hold; beyond it the oldest segments are dropped
    /// and counted (e.g. 1GiB, 512MiB).
    #[arg(long, env = "TELLTALE_BUFFER_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    #[serde(deserialize_with = "bytes_from_yaml")]
    pub buffer_max_bytes: u64,

    /// Age beyond which queued samples are dropped and counted.
    #[arg(long, env = "TELLTALE_BUFFER_MAX_AGE", default_value = "72h", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub buffer_max_age: Duration,

    /// Longest time between fsyncs of the queue (what power loss can take).
    #[arg(long, env = "TELLTALE_BUFFER_FSYNC_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub buffer_fsync_interval: Duration,

    /// Samples per remote-write request at most.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_BATCH_SIZE", default_value = "2000", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub remote_write_batch_size: u64,

    /// Concurrent senders per destination (a series always uses the same one).
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_SENDERS", default_value = "1", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub remote_write_senders: u64,

    /// Samples per second per destination at most, so that many nodes replaying a
    /// backlog at once do not flatten the receiver.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_MAX_SAMPLES_PER_SECOND", default_value = "20000", value_parser = clap::value_parser!(u64).range(1..))]
    pub remote_write_max_samples_per_second: u64,

    /// Timeout of one remote-write request.
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub remote_write_timeout: Duration,

    /// Longest wait between retries (they start at 100ms and double, with jitter).
    #[arg(long, env = "TELLTALE_REMOTE_WRITE_MAX_BACKOFF", default_value = "10s", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub remote_write_max_backoff: Duration,
}

impl Default for CollectorArgs {
    fn default() -> Self {
        let mut args: CollectorArgs = defaults("collector");
        args.config = None;
        args
    }
}

/// The collector's settings after layering flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// `--once`.
    pub once: bool,
    opts: telltale_collector::Options,
}

impl CollectorConfig {
    /// Options for the collector library.
    pub fn options(&self) -> telltale_collector::Options {
        self.opts.clone()
    }
}

/// Layers `cli` (whose sources `m` records) over the `--config` file and defaults.
pub fn config(cli: CollectorArgs, m: &ArgMatches) -> Result<CollectorConfig, ConfigError> {
    let file: CollectorArgs = load_file(cli.config.as_deref())?;
    macro_rules! pick {
        ($($field:ident),*) => {
            CollectorArgs {
                config: cli.config.clone(),
                $($field: if explicit(m, stringify!($field)) { cli.$field.clone() } else { file.$field.clone() },)*
            }
        };
    }
    let a = pick!(
        listen,
        once,
        node_name,
        cluster,
        proc_root,
        sys_root,
        rootfs,
        interval,
        no_kube,
        kubeconfig,
        cluster_state,
        pod_annotations_allowlist,
        remote_write,
        remote_write_token_file,
        tls_ca,
        tls_cert,
        tls_key,
        buffer_dir,
        buffer_max_bytes,
        buffer_max_age,
        buffer_fsync_interval,
        remote_write_batch_size,
        remote_write_senders,
        remote_write_max_samples_per_second,
        remote_write_timeout,
        remote_write_max_backoff
    );
    if a.cluster_state && a.no_kube {
        return Err(ConfigError::Invalid {
            key: "cluster-state",
            message: "needs Kubernetes; it cannot be combined with --no-kube".into(),
        });
    }
    let node_name = match a.node_name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => match std::env::var("NODE_NAME") {
            Ok(n) if !n.is_empty() => n,
            _ => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
        },
    };
    if a.cluster.is_empty() {
        return Err(ConfigError::Invalid {
            key: "cluster",
            message: "must not be empty".into(),
        });
    }
    if !a.proc_root.join("stat").is_file() {
        return Err(ConfigError::Invalid {
            key: "proc-root",
            message: format!(
                "{} has no stat file; expected a procfs mount such as /proc",
                a.proc_root.display()
            ),
        });
    }
    if let Some(bad) = a
        .remote_write
        .iter()
        .position(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(ConfigError::Invalid {
            key: "remote-write",
            message: format!("URL number {} must start with http:// or https://", bad + 1),
        });
    }
    if a.tls_cert.is_some() != a.tls_key.is_some() {
        return Err(ConfigError::Invalid {
            key: "tls-cert",
            message: "--tls-cert and --tls-key must be given together".into(),
        });
    }
    if a.interval.is_zero() {
        return Err(ConfigError::Invalid {
            key: "interval",
            message: "must be more than zero".into(),
        });
    }
    Ok(CollectorConfig {
        listen: a.listen,
        once: a.once,
        opts: telltale_collector::Options {
            cluster: a.cluster,
            node_name,
            proc_root: a.proc_root,
            sys_root: a.sys_root,
            rootfs: a.rootfs,
            interval: a.interval,
            no_kube: a.no_kube,
            kubeconfig: a.kubeconfig,
            cluster_state: a.cluster_state,
            pod_annotations_allowlist: a.pod_annotations_allowlist,
            remote: telltale_collector::ship::Config {
                urls: a.remote_write,
                token_file: a.remote_write_token_file,
                tls: telltale_collector::ship::TlsFiles {
                    ca: a.tls_ca,
                    cert: a.tls_cert,
                    key: a.tls_key,
                },
                buffer_dir: a.buffer_dir,
                max_bytes: a.buffer_max_bytes,
                max_age: a.buffer_max_age,
                fsync_every: a.buffer_fsync_interval,
                batch_size: a.remote_write_batch_size as usize,
                senders: a.remote_write_senders as usize,
                max_rate: a.remote_write_max_samples_per_second,
                timeout: a.remote_write_timeout,
                max_backoff: a.remote_write_max_backoff,
                ..Default::default()
            },
        },
    })
}

/// Runs the collector until SIGTERM or Ctrl-C, on a current-thread runtime.
pub fn run(args: CollectorArgs, m: &ArgMatches) -> Result<(), Failure> {
    let cfg = config(args, m).map_err(Failure::Usage)?;
    let opts = cfg.options();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    if cfg.once {
        let snap = rt
            .block_on(telltale_collector::once(&opts))
            .map_err(|e| Failure::Runtime(e.into()))?;
        use std::io::Write as _;
        std::io::stdout()
            .write_all(&snap.text)
            .map_err(|e| Failure::Runtime(e.into()))?;
        return Ok(());
    }
    rt.block_on(async {
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        telltale_collector::run(opts, cfg.listen, cancel, |_| {}).await
    })
    .map_err(|e| Failure::Runtime(e.into()))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::cli::Cli;

    fn parse(argv: &[&str]) -> (CollectorArgs, ArgMatches) {
        let m = Cli::command().try_get_matches_from(argv).unwrap();
        let sub = m.subcommand_matches("collector").unwrap().clone();
        (CollectorArgs::from_arg_matches(&sub).unwrap(), sub)
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "cluster: from-file\ninterval: 30s\nnode-name: n-file\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let (cli, m) = parse(&[
            "telltale",
            "collector",
            "--config",
            f,
            "--cluster",
            "from-flag",
        ]);
        let cfg = config(cli, &m).unwrap();
        let o = cfg.options();
        assert_eq!(o.cluster, "from-flag");
        assert_eq!(o.interval, Duration::from_secs(30));
        assert_eq!(o.node_name, "n-file");
        assert_eq!(o.proc_root, PathBuf::from("/proc"));
        assert_eq!(cfg.listen, "0.0.0.0:9101".parse().unwrap());
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "clutser: x\n").unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let err = config(cli, &m).unwrap_err().to_string();
        assert!(err.contains("unknown field `clutser`"), "{err}");
        assert!(err.contains("c.yaml"), "{err}");
    }

    #[test]
    fn bad_value_in_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(&file, "interval: soon\n").unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let err = config(cli, &m).unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn remote_write_settings_are_checked_and_sizes_parse() {
        let (cli, m) = parse(&["telltale", "collector", "--remote-write", "ftp://x"]);
        let err = config(cli, &m).unwrap_err().to_string();
        assert!(
            err.contains("remote-write") && err.contains("http://"),
            "{err}"
        );
        let (cli, m) = parse(&["telltale", "collector", "--tls-cert", "/c.pem"]);
        let err = config(cli, &m).unwrap_err().to_string();
        assert!(err.contains("--tls-key"), "{err}");
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("40KiB"), Ok(40 << 10));
        assert_eq!(parse_bytes("1.5MB"), Ok(1_500_000));
        assert_eq!(parse_bytes("123"), Ok(123));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unit"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "remote-write: [\"http://a/api/v1/write\", \"https://b/w\"]\nbuffer-max-bytes: 64MiB\n",
        )
        .unwrap();
        let (cli, m) = parse(&["telltale", "collector", "--config", file.to_str().unwrap()]);
        let o = config(cli, &m).unwrap().options();
        assert_eq!(o.remote.urls.len(), 2);
        assert_eq!(o.remote.max_bytes, 64 << 20);
        assert_eq!(o.remote.batch_size, 2000);
    }

    #[test]
    fn defaults_match_help() {
        let d = CollectorArgs::default();
        assert_eq!(d.listen, "0.0.0.0:9101".parse().unwrap());
        assert_eq!(d.interval, Duration::from_secs(15));
        assert_eq!(d.cluster, "default");
        let help = Cli::command()
            .find_subcommand_mut("collector")
            .unwrap()
            .render_long_help()
            .to_string();
        for want in [
            "[default: 0.0.0.0:9101]",
            "[default: 15s]",
            "[default: /proc]",
            "[default: /sys]",
            "[default: default]",
            "TELLTALE_NODE_NAME",
        ] {
            assert!(help.contains(want), "help lacks {want}:\n{help}");
        }
    }
}
