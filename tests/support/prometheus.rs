//! The chart's alerts and dashboard, and a real Prometheus (Debian's package, fetched by
//! `bash scripts/test.sh e2e` into WPA_PROMETHEUS_BIN_DIR) to check them with.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `promtool` or `prometheus`: from WPA_PROMETHEUS_BIN_DIR, else PATH. Panics, saying how to get it, when it
/// cannot be run.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("WPA_PROMETHEUS_BIN_DIR").map(PathBuf::from);
    let path = dir.map_or_else(|| PathBuf::from(name), |d| d.join(name));
    let ok = Command::new(&path).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot be run: bash scripts/test.sh e2e fetches Debian's prometheus package and sets WPA_PROMETHEUS_BIN_DIR",
        path.display()
    );
    path
}

/// The chart rendered with `values` by `tests/helm/chart.py render` (python3 and helm-python-sdk); its
/// documents.
pub fn render_chart(values: &Value, dir: &Path, label: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(repo().join("tests/helm/chart.py"))
        .args(["render", "--values-json", &values.to_string(), "--out"])
        .arg(dir)
        .args(["--label", label])
        .current_dir(repo())
        .output()
        .expect("python3 tests/helm/chart.py (python3 and helm-python-sdk: bash scripts/test.sh e2e installs them)");
    assert!(
        out.status.success(),
        "chart.py render: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(dir.join(format!("{label}.yaml"))).expect("the rendered file");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The rule groups of the PrometheusRule the chart renders with `values`, as a Prometheus rule file
/// `dir/wpa-rules.yaml`.
pub fn rules_file(values: &Value, dir: &Path) -> PathBuf {
    let docs = render_chart(values, dir, "rules");
    let rule = docs.iter().find(|d| d["kind"] == "PrometheusRule").expect("a PrometheusRule");
    let path = dir.join("wpa-rules.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&rule["spec"]).expect("YAML")).expect("write the rules");
    path
}

/// The committed dashboard (charts/wpa/dashboards/wpa.json).
pub fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo().join("charts/wpa/dashboards/wpa.json")).expect("the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// The dashboard's PromQL: every panel target's expr, and the selector inside each `label_values(...)`
/// variable query.
pub fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("a target's expr").to_string());
        }
    }
    for v in dashboard["templating"]["list"].as_array().expect("variables") {
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q.strip_prefix("label_values(").and_then(|q| q.rsplit_once(',')).map(|(s, _)| s);
            out.push(inner.unwrap_or_else(|| panic!("variable query {q}")).to_string());
        }
    }
    out
}

/// A Prometheus server on loopback, stopped when dropped.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Prometheus {
    /// Scrapes `targets` (host:port) every second as job `wpa` and evaluates `rules` every second; waits
    /// until it is ready.
    pub fn start(dir: &Path, targets: &[String], rules: &Path) -> Prometheus {
        let port = devcluster::free_loopback_port().expect("a free port");
        let config = dir.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}\nrule_files: [\"{}\"]\nscrape_configs:\n- job_name: wpa\n  static_configs: [{{targets: [{}]}}]\n",
                rules.display(),
                targets.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let log = dir.join("prometheus.log");
        let child = Command::new(bin("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log"))
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, port, log };
        let started = Instant::now();
        while !matches!(devcluster::http_get(port, "/-/ready"), Ok((200, _))) {
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus not ready:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET of the HTTP API `path` with the query parameters `params`; the JSON answer (any status).
    pub fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
        let (_, body) = devcluster::http_get(self.port, &format!("{path}?{}", query.join("&")))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding of a query parameter (RFC 3986: everything but the unreserved characters).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The vector selectors of a PromQL expression (those inside range selections too), as PromQL text; or
/// the parser's error.
pub fn selectors(expr: &str) -> Result<Vec<String>, String> {
    use promql_parser::{parser::Expr, util::ExprVisitor};
    struct Collect(Vec<String>);
    impl ExprVisitor for Collect {
        type Error = String;
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, String> {
            match e {
                Expr::VectorSelector(vs) => self.0.push(vs.to_string()),
                Expr::MatrixSelector(ms) => self.0.push(ms.vs.to_string()),
                _ => {}
            }
            Ok(true)
        }
    }
    let ast = promql_parser::parser::parse(expr)?;
    let mut c = Collect(Vec::new());
    promql_parser::util::walk_expr(&mut c, &ast)?;
    Ok(c.0)
}
