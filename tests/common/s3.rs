//! An S3-compatible server not written by us: `moto_server` (PyPI `moto[server]`,
//! installed by the test command), reached by the aggregator's real S3 client over HTTP
//! with signed requests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, spawn_cmd, telltale, Running};

/// A running `moto_server` with one bucket; killed when dropped.
pub struct S3 {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket made at start.
    pub bucket: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// Starts the server and makes `bucket`. None (with a message naming the package)
    /// when moto_server is not installed, unless TELLTALE_REQUIRE_TOOLS=1.
    pub fn start(bucket: &str) -> Option<S3> {
        let found = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .any(|d| d.join("moto_server").is_file());
        if !found {
            let why = "moto_server is not installed (python3 -m pip install 'moto[server]')";
            if std::env::var("TELLTALE_REQUIRE_TOOLS").as_deref() == Ok("1") {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_string(),
        };
        // Made with a plain request: moto takes unsigned ones, and the store under test
        // must not be what creates its own bucket.
        let made = eventually(Duration::from_secs(60), || {
            ureq::put(&format!("{}/{bucket}", s3.endpoint))
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
        });
        assert!(made.is_some(), "moto_server did not make the bucket");
        Some(s3)
    }

    /// `telltale` with the S3 client's settings in its environment.
    pub fn telltale(&self) -> Command {
        let mut c = telltale();
        c.env("AWS_ACCESS_KEY_ID", "telltale-test")
            .env("AWS_SECRET_ACCESS_KEY", "telltale-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ALLOW_HTTP", "true");
        c
    }

    /// `telltale aggregator` on `data`, its files kept in `prefix` of the bucket, with
    /// `flags` added.
    pub fn aggregator(&self, data: &Path, prefix: &str, flags: &[&str]) -> Running {
        let mut c = self.telltale();
        c.args(["aggregator", "--data-dir"])
            .arg(data)
            .arg("--object-store")
            .arg(format!("s3://{}/{prefix}", self.bucket))
            .args(flags);
        spawn_cmd(c)
    }

    /// The keys of the bucket under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let url = format!(
            "{}/{}?list-type=2&prefix={prefix}&max-keys=100000",
            self.endpoint, self.bucket
        );
        let body = ureq::get(&url)
            .timeout(Duration::from_secs(10))
            .call()
            .expect("list the bucket")
            .into_string()
            .expect("listing text");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }

    /// Stops (SIGSTOP) or resumes (SIGCONT) the server: while stopped, connections are
    /// accepted by the kernel and never answered.
    pub fn pause(&self, paused: bool) {
        let signal = if paused {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal)
            .expect("signal moto_server");
    }
}
