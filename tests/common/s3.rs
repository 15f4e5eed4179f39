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
        self.telltale_via(&self.endpoint)
    }

    /// [`S3::telltale`] reaching the server at `endpoint` (a proxy in front of it).
    pub fn telltale_via(&self, endpoint: &str) -> Command {
        let mut c = telltale();
        c.env("AWS_ACCESS_KEY_ID", "telltale-test")
            .env("AWS_SECRET_ACCESS_KEY", "telltale-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ALLOW_HTTP", "true");
        c
    }

    /// `telltale aggregator` on `data`, its files kept in `prefix` of the bucket, with
    /// `flags` added.
    pub fn aggregator(&self, data: &Path, prefix: &str, flags: &[&str]) -> Running {
        self.aggregator_via(&self.endpoint, data, prefix, flags)
    }

    /// [`S3::aggregator`] reaching the server at `endpoint`.
    pub fn aggregator_via(
        &self,
        endpoint: &str,
        data: &Path,
        prefix: &str,
        flags: &[&str],
    ) -> Running {
        let mut c = self.telltale_via(endpoint);
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

    /// The keys of the multipart uploads started and neither completed nor aborted.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        let body = ureq::get(&format!("{}/{}?uploads", self.endpoint, self.bucket))
            .timeout(Duration::from_secs(10))
            .call()
            .expect("list multipart uploads")
            .into_string()
            .expect("listing text");
        body.split("<Upload>")
            .skip(1)
            .filter_map(|u| u.split("<Key>").nth(1)?.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// A forwarder to the server that holds, unanswered, every connection once what it
    /// has sent lately (its last 4 KiB and what it read since) satisfies `hold`, e.g.
    /// holds a multipart upload's second part (`partNumber=2`).
    pub fn holding(&self, hold: fn(&str) -> bool) -> Holding {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let target = self.endpoint.trim_start_matches("http://").to_owned();
        let flag = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let (Ok(client), Ok(server)) = (conn, std::net::TcpStream::connect(&target)) else {
                    continue;
                };
                let (mut back_from, mut back_to) = (
                    server.try_clone().expect("clone"),
                    client.try_clone().expect("clone"),
                );
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut back_from, &mut back_to);
                });
                let flag = flag.clone();
                std::thread::spawn(move || forward_until(client, server, hold, &flag));
            }
        });
        Holding { addr, held }
    }
}

/// Copies `from` to `to` until the bytes sent lately satisfy `hold`: then stops reading,
/// keeps both ends open, and sets `held`.
fn forward_until(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    hold: fn(&str) -> bool,
    held: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buf[..n]);
        if hold(&String::from_utf8_lossy(&tail)) {
            held.store(true, std::sync::atomic::Ordering::SeqCst);
            // Held until the test ends: the sender waits for an answer that never comes.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let keep = tail.len().saturating_sub(4096);
        tail.drain(..keep);
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// See [`S3::holding`].
pub struct Holding {
    addr: std::net::SocketAddr,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Holding {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether a connection has been held.
    pub fn held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}
