//! What operators see of wpa on a real control plane: `kubectl get wpa` (upstream's columns, and the target
//! and replicas with `-o wide`), the Prometheus series across a `dryRun` toggle, and a real Prometheus
//! scraping `wpa serve` through a scaling scenario, which every alert of the chart's PrometheusRule and every
//! query of its Grafana dashboard must parse in and name only series it has.

mod support;

use std::{collections::BTreeSet, time::Duration};

use support::{ScalingCluster, StartWpa, WpaServe, wpa_yaml};

const SECOND: Duration = Duration::from_secs(1);

/// `wpa serve` running the reconciler only, passing over each WPA every second.
async fn reconciler(c: &ScalingCluster, name: &str) -> WpaServe {
    WpaServe::start(&c.cluster, name, None, &["--no-webhook", "--sync-period", "1s", "--leader-elect=false"])
        .await
        .expect("start wpa serve")
}

/// The cells of a `kubectl get` table line (columns are apart by at least two spaces; header names have
/// single spaces).
fn cells(line: &str) -> Vec<String> {
    line.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(String::from).collect()
}

fn kubectl_table(c: &ScalingCluster, args: &[&str]) -> (Vec<String>, Vec<String>) {
    let out = c.cluster.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("kubectl {}:\n{text}", args.join(" "));
    let mut lines = text.lines();
    (cells(lines.next().expect("a header")), cells(lines.next().expect("a row")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_wpa_wide_shows_the_target_and_replicas_and_the_default_stays_upstreams() {
    let c = ScalingCluster::start().await;
    c.deployment("shop", "web", 2).await.expect("deployment");
    c.metrics.set("web-qps", 300.0);
    let extra = "  upscaleForbiddenWindowSeconds: 1\n";
    let text = wpa_yaml("shop", "web", "web", "web-qps", "100", "50", extra)
        .replace("maxReplicas: 10", "maxReplicas: 3");
    c.apply_wpa(&text).await.expect("the WPA");
    let _serve = reconciler(&c, "a").await;
    // ceil(2 × 300 / 100) = 6, limited to +50 % and to the maximum: 3.
    c.wait_scale("shop", "web", 3, 30 * SECOND).await.expect("an upscale");
    let st = support::wait_for(20 * SECOND, || async {
        let st = c.wpa_status("shop", "web").await.map_err(|e| e.to_string())?;
        if st.desired_replicas == 3 && st.current_replicas == 3 { Ok(st) } else { Err(format!("{st:?}")) }
    })
    .await
    .expect("the status shows 3 desired and 3 current");
    assert_eq!(st.desired_replicas, 3);

    // Upstream's twelve columns, in its order, and nothing more.
    let (header, row) = kubectl_table(&c, &["get", "wpa", "-n", "shop"]);
    assert_eq!(
        header,
        [
            "NAME",
            "SCALING ACTIVE",
            "CONDITION",
            "CONDITION STATE",
            "VALUE",
            "HIGH WATERMARK",
            "LOW WATERMARK",
            "AGE",
            "MIN REPLICAS",
            "MAX REPLICAS",
            "DRY-RUN",
            "LAST SCALE"
        ]
    );
    assert_eq!(row[0], "web");

    let (header, row) = kubectl_table(&c, &["get", "wpa", "-n", "shop", "-o", "wide"]);
    let column = |name: &str| {
        let i = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
        row[i].clone()
    };
    assert_eq!(header.len(), row.len(), "every cell has a value: {header:?} {row:?}");
    assert_eq!(column("TARGET KIND"), "Deployment");
    assert_eq!(column("TARGET"), "web");
    assert_eq!(column("DESIRED"), "3");
    assert_eq!(column("CURRENT"), "3");
    assert_eq!(column("MAX REPLICAS"), "3");
}

/// The series of WPA `name` in an exposition: name and labels, without the value.
fn series_of(text: &str, name: &str) -> BTreeSet<String> {
    let label = format!("wpa_name=\"{name}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

fn value_of(text: &str, metric: &str, name: &str) -> Option<f64> {
    let label = format!("wpa_name=\"{name}\"");
    text.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series.starts_with(&format!("{metric}{{")) && series.contains(&label)).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_dry_run_on_a_live_wpa_keeps_the_same_series_and_flips_the_gauge() {
    let c = ScalingCluster::start().await;
    c.deployment("dry", "api", 2).await.expect("deployment");
    // Within the band: nothing scales, so no series comes or goes for another reason.
    c.metrics.set("api-qps", 80.0);
    let text = wpa_yaml("dry", "api", "api", "api-qps", "100", "50", "")
        .replace("  namespace: dry\n", "  namespace: dry\n  labels:\n    team: payments\n");
    c.apply_wpa(&text).await.expect("the WPA");
    let serve = WpaServe::start(
        &c.cluster,
        "a",
        None,
        &["--no-webhook", "--sync-period", "1s", "--leader-elect=false", "--labels-as-tags", "team"],
    )
    .await
    .expect("start wpa serve");
    let scrape = || support::http_get(serve.health_port, "/metrics").expect("GET /metrics").1;
    // Two scrapes a few passes apart agree: the set is settled.
    let before = support::wait_for(30 * SECOND, || async {
        let first = scrape();
        tokio::time::sleep(3 * SECOND).await;
        let second = scrape();
        let (a, b) = (series_of(&first, "api"), series_of(&second, "api"));
        if !a.is_empty() && a == b && value_of(&second, "wpa_controller_dry_run", "api") == Some(0.0) {
            Ok(second)
        } else {
            Err(format!("not settled:\n{first}\n{second}"))
        }
    })
    .await
    .expect("the WPA's series");
    assert!(!before.contains("dry_run=\""), "no series has a dry_run label:\n{before}");
    assert!(before.contains("wpa_controller_labels_info{team=\"payments\",wpa_name=\"api\""), "{before}");

    let out = c.cluster.kubectl(&[
        "patch",
        "wpa",
        "api",
        "-n",
        "dry",
        "--type=merge",
        "-p",
        r#"{"spec":{"dryRun":true}}"#,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = support::wait_for(20 * SECOND, || async {
        let text = scrape();
        if value_of(&text, "wpa_controller_dry_run", "api") == Some(1.0) { Ok(text) } else { Err(text) }
    })
    .await
    .expect("the dry_run gauge turns 1");
    let (b, a) = (series_of(&before, "api"), series_of(&after, "api"));
    assert_eq!(
        b,
        a,
        "the same series before and after the toggle; only before: {:?}, only after: {:?}",
        b.difference(&a).collect::<Vec<_>>(),
        a.difference(&b).collect::<Vec<_>>()
    );
    eprintln!("{} series kept their identity across the dryRun toggle", a.len());
}
