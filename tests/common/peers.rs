//! Real peers for the alerting tests: an SMTP server (aiosmtpd, PyPI) with STARTTLS,
//! implicit TLS and AUTH, a test CA made by openssl, and Alertmanager (Debian
//! `prometheus-alertmanager`). Each is a child process killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{eventually, free_port, tool};

/// A CA and a certificate for `localhost`/127.0.0.1 it signed, in `dir`.
pub struct Certs {
    /// The CA certificate (what clients trust).
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// Makes a CA, a server certificate and a client certificate (`client.pem`,
/// `client.key`) in `dir` with openssl; None when openssl is missing.
pub fn certs(dir: &Path) -> Option<Certs> {
    let openssl = tool("openssl")?;
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=telltale-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    // A server certificate for localhost and 127.0.0.1, and a client certificate (mutual
    // TLS), both signed by the CA.
    for (name, cn, usage) in [
        (
            "server",
            "/CN=localhost",
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        ),
        (
            "client",
            "/CN=telltale-test",
            "extendedKeyUsage=clientAuth\n",
        ),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        run(&[
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", cn],
        ]
        .concat());
        std::fs::write(
            dir.join(&ext),
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{usage}"
            ),
        )
        .expect("write the extensions file");
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    Some(Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    })
}

/// `tests/alerting/smtp_server.py` running.
pub struct Smtp {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Where received mail lands (`NNNNNN.json`).
    pub out: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// Starts the server on `port` (0 = any) with `tls` (none, starttls, implicit) and,
    /// when given, required AUTH `user:pass`; mail goes to `out`.
    pub fn start(
        port: u16,
        tls: &str,
        certs: Option<&Certs>,
        auth: Option<&str>,
        out: &Path,
    ) -> Smtp {
        std::fs::create_dir_all(out).expect("mail dir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/alerting/smtp_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port", &port.to_string(), "--tls", tls, "--out"])
            .arg(out);
        if let Some(c) = certs {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        if let Some(a) = auth {
            let (creds, mechanism) = a.split_once(' ').unwrap_or((a, ""));
            cmd.args(["--auth", creds]);
            if !mechanism.is_empty() {
                cmd.args(["--auth-mechanism", mechanism]);
            }
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp_server.py (python3 with aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read ready line");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!("smtp_server.py did not start (is aiosmtpd installed?): {line:?}")
            });
        Smtp {
            child,
            port,
            out: out.to_owned(),
        }
    }

    /// Every message received so far, oldest first.
    pub fn mails(&self) -> Vec<serde_json::Value> {
        mails(&self.out)
    }
}

/// The messages in a mail directory, oldest first.
pub fn mails(out: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "json"));
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read mail")).expect("mail json"))
        .collect()
}

/// Alertmanager 0.25 with one null receiver, gossip off; None when not installed.
pub struct Alertmanager {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    /// Starts it with state under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Option<Alertmanager> {
        let bin = tool("prometheus-alertmanager")?;
        let port = free_port();
        let cfg = dir.join("alertmanager.yml");
        std::fs::write(
            &cfg,
            "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
        )
        .expect("write config");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn alertmanager");
        let am = Alertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        eventually(Duration::from_secs(20), || am.alerts().ok()).expect("alertmanager answers");
        Some(am)
    }

    /// Its active alerts (`GET /api/v2/alerts`).
    pub fn alerts(&self) -> Result<Vec<serde_json::Value>, String> {
        let (status, body) = super::try_get(&format!("{}/api/v2/alerts", self.url))?;
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        serde_json::from_str(&body).map_err(|e| e.to_string())
    }
}

/// A webhook endpoint: keeps every request's JSON body with the status it answered
/// (settable), one connection at a time, `Connection: close`.
pub struct Hook {
    addr: std::net::SocketAddr,
    inner: std::sync::Arc<std::sync::Mutex<Answers>>,
}

/// The status to answer, and (status, body) of every request.
type Answers = (u16, Vec<(u16, serde_json::Value)>);

impl Hook {
    /// Listens on 127.0.0.1, answering 200.
    pub fn start() -> Hook {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind hook");
        let addr = listener.local_addr().expect("addr");
        let inner = std::sync::Arc::new(std::sync::Mutex::new((200u16, Vec::new())));
        let shared = inner.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Headers, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = conn.read(&mut chunk) else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break Some(buf[end + 4..end + 4 + len].to_vec());
                    }
                };
                let Some(body) = body else { continue };
                let status = {
                    let mut g = shared.lock().unwrap();
                    let status = g.0;
                    g.1.push((status, serde_json::from_slice(&body).unwrap_or_default()));
                    status
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Hook { addr, inner }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `status` from now on.
    pub fn set_status(&self, status: u16) {
        self.inner.lock().unwrap().0 = status;
    }

    /// (status answered, body) of every request so far.
    pub fn bodies(&self) -> Vec<(u16, serde_json::Value)> {
        self.inner.lock().unwrap().1.clone()
    }
}

/// A TCP forwarder to `target` that the test can cut (closing every open connection)
/// and restore.
pub struct Proxy {
    addr: std::net::SocketAddr,
    up: std::sync::Arc<AtomicUp>,
}

type AtomicUp = std::sync::Mutex<(bool, Vec<std::net::TcpStream>)>;

impl Proxy {
    /// Listens on 127.0.0.1, forwarding to `target` (`host:port`).
    pub fn start(target: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = std::sync::Arc::new(std::sync::Mutex::new((true, Vec::new())));
        let shared = up.clone();
        let target = target.to_owned();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let mut g = shared.lock().unwrap();
                if !g.0 {
                    continue; // dropped: closed at once
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        g.1.push(c);
                    }
                }
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, up }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cuts (closing open connections) or restores the link.
    pub fn set_up(&self, up: bool) {
        let mut g = self.up.lock().unwrap();
        g.0 = up;
        if !up {
            for s in g.1.drain(..) {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
