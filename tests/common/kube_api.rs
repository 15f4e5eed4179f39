//! A stand-in Kubernetes API server for black-box tests. It answers the calls kube-runtime's
//! watcher makes (`GET /api/v1/pods` as a list, then with `watch=true` as a chunked stream of
//! events) in the API's JSON shapes: `PodList`, `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`
//! events, and a 410 `Expired` status that makes the client list again. So the real kube
//! client code runs end to end; no Kubernetes is needed. Other collections (nodes,
//! deployments, ...) list what [`FakeApi::set_objects`] gave them; their watches stay
//! open without events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

type Watch = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

const PODS: &str = "/api/v1/pods";

#[derive(Default)]
struct ApiState {
    /// Objects by collection path (`/api/v1/pods`, `/apis/apps/v1/deployments`...).
    objects: HashMap<String, Vec<Value>>,
    resource_version: u64,
    /// While set, every request fails with this status.
    failing: Option<u16>,
    /// Open watches, with the collection each watches.
    watches: Vec<(String, Watch)>,
    requests: Vec<String>,
}

/// The running stand-in; stops when dropped.
pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(Mutex::new(ApiState {
            resource_version: 1000,
            ..Default::default()
        }));
        let app = Router::new()
            .fallback(get(collection))
            .with_state(state.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move { axum::serve(listener, app).await });
        FakeApi {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// A kubeconfig file for this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    fn with<T>(&self, f: impl FnOnce(&mut ApiState) -> T) -> T {
        f(&mut self.state.lock().expect("state"))
    }

    /// Replaces the pods a list returns (open watches are not told).
    pub fn set_pods(&self, pods: Vec<Value>) {
        self.set_objects(PODS, pods);
    }

    /// Replaces the objects a list of `path` returns (`/api/v1/nodes`,
    /// `/apis/apps/v1/deployments`...). Paths with no objects list as empty.
    pub fn set_objects(&self, path: &str, objects: Vec<Value>) {
        self.with(|s| {
            s.resource_version += 1;
            s.objects.insert(path.to_owned(), objects);
        });
    }

    /// Sends a watch event (`ADDED`, `MODIFIED`, `DELETED`) to open watches and applies it to
    /// what later lists return.
    pub fn event(&self, kind: &str, mut pod: Value) {
        self.with(|s| {
            s.resource_version += 1;
            pod["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
            let uid = pod["metadata"]["uid"].clone();
            let pods = s.objects.entry(PODS.to_owned()).or_default();
            pods.retain(|p| p["metadata"]["uid"] != uid);
            if kind != "DELETED" {
                pods.push(pod.clone());
            }
            broadcast(s, &json!({"type": kind, "object": pod}));
        });
    }

    /// Sends a BOOKMARK to open watches.
    pub fn bookmark(&self) {
        self.with(|s| {
            let rv = s.resource_version.to_string();
            broadcast(s, &json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}}));
        });
    }

    /// Tells open watches their resource version is too old (410 Gone) and closes them, as
    /// the API server does after compaction; the client must list again.
    pub fn expire(&self) {
        self.with(|s| {
            let status = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "too old resource version: 1000 (1500)", "reason": "Expired", "code": 410}});
            broadcast(s, &status);
            s.watches.clear();
        });
    }

    /// While `Some(code)`, every request fails with that status (503 unavailable, 401, 403
    /// for missing RBAC...) and open watches are cut.
    pub fn set_failing(&self, code: Option<u16>) {
        self.with(|s| {
            s.failing = code;
            if code.is_some() {
                s.watches.clear();
            }
        });
    }

    /// The query strings of requests so far (`watch=true&...`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.with(|s| s.requests.clone())
    }
}

fn broadcast(s: &mut ApiState, event: &Value) {
    let mut line = serde_json::to_vec(event).expect("json");
    line.push(b'\n');
    let line = Bytes::from(line);
    s.watches
        .retain(|(path, w)| path != PODS || w.send(Ok(line.clone())).is_ok());
}

/// `NodeList` for `/api/v1/nodes`, `DeploymentList` for `/apis/apps/v1/deployments`...
fn list_kind(path: &str) -> String {
    let plural = path.rsplit('/').next().unwrap_or_default();
    let singular = plural
        .strip_suffix("sses")
        .map(|s| format!("{s}ss"))
        .or_else(|| plural.strip_suffix('s').map(str::to_owned))
        .unwrap_or_else(|| plural.to_owned());
    let mut kind: Vec<char> = singular.chars().collect();
    if let Some(c) = kind.first_mut() {
        *c = c.to_ascii_uppercase();
    }
    let kind: String = kind.into_iter().collect();
    let kind = match kind.as_str() {
        "Replicaset" => "ReplicaSet".to_owned(),
        "Daemonset" => "DaemonSet".to_owned(),
        "Statefulset" => "StatefulSet".to_owned(),
        "Cronjob" => "CronJob".to_owned(),
        _ => kind,
    };
    format!("{kind}List")
}

async fn collection(
    State(state): State<Arc<Mutex<ApiState>>>,
    uri: axum::http::Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path().to_owned();
    let mut s = state.lock().expect("state");
    let mut keys: Vec<_> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
    keys.sort();
    s.requests.push(keys.join("&"));
    if let Some(code) = s.failing {
        let reason = match code {
            401 => "Unauthorized",
            403 => "Forbidden",
            _ => "ServiceUnavailable",
        };
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("pods is forbidden or unavailable ({code})"), "reason": reason, "code": code});
        let code = StatusCode::from_u16(code).expect("status code");
        return (code, axum::Json(status)).into_response();
    }
    let node = q
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    let on_node = |p: &&Value| node.as_deref().is_none_or(|n| p["spec"]["nodeName"] == n);
    if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
        let (tx, rx) = mpsc::unbounded_channel();
        s.watches.push((path, tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        return Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let items: Vec<Value> = s
        .objects
        .get(&path)
        .into_iter()
        .flatten()
        .filter(on_node)
        .cloned()
        .collect();
    axum::Json(json!({
        "kind": list_kind(&path),
        "apiVersion": if path.starts_with("/apis/") { path.split('/').skip(2).take(2).collect::<Vec<_>>().join("/") } else { "v1".to_owned() },
        "metadata": {"resourceVersion": s.resource_version.to_string()},
        "items": items,
    }))
    .into_response()
}

/// A running pod as the API returns it: `containers` are (name, image, runtime id); the
/// statuses carry `containerd://<id>`.
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    containers: &[(&str, &str, &str)],
) -> Value {
    let specs: Vec<Value> = containers
        .iter()
        .map(|(n, image, _)| json!({"name": n, "image": image, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}))
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(n, image, id)| json!({
            "name": n, "image": image, "imageID": format!("{image}@sha256:0000"), "containerID": format!("containerd://{id}"),
            "ready": true, "restartCount": 0, "started": true,
            "state": {"running": {"startedAt": "2026-11-23T10:00:05Z"}}, "lastState": {}
        }))
        .collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid, "resourceVersion": "1000",
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "labels": {"app": name.rsplit_once('-').map_or(name, |(a, _)| a)},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-rs"),
                "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"nodeName": node, "containers": specs, "restartPolicy": "Always", "schedulerName": "default-scheduler"},
        "status": {
            "phase": "Running", "hostIP": "10.0.0.11", "podIP": "10.244.1.7", "startTime": "2026-11-23T10:00:01Z",
            "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:06Z"}],
            "containerStatuses": statuses
        }
    })
}
