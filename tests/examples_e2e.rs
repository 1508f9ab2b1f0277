//! Every WatermarkPodAutoscaler the project shows a user (in the README, docs/, examples/, the chart's NOTES
//! and README, and `--help`) is accepted as it is: `kubectl apply --dry-run=server` through the webhook
//! (mutating and validating), on Kubernetes 1.20.2.

mod support;

use std::path::Path;

use support::TestCluster;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The YAML documents of `text` that are WatermarkPodAutoscalers.
fn wpas_in(text: &str) -> Vec<String> {
    text.split("\n---")
        .map(|d| d.trim_matches('\n').to_string())
        .filter(|d| d.lines().any(|l| l.trim() == "kind: WatermarkPodAutoscaler"))
        .collect()
}

/// The bodies of the here-documents of `text` (`<<'YAML'` ... `YAML`, `<<EOF` ... `EOF`), dedented.
fn here_documents(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((_, rest)) = line.split_once("<<") else { continue };
        let marker = rest.trim().trim_matches(|c| c == '\'' || c == '"' || c == '-');
        if marker.is_empty() || !marker.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != marker).collect();
        let indent =
            body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min();
        let indent = indent.unwrap_or(0);
        out.push(body.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n"));
    }
    out
}

/// The code blocks of a Markdown text: YAML blocks as they are, shell blocks' here-documents.
fn markdown_wpas(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<(String, Vec<&str>)> = None;
    for line in text.lines() {
        match (&mut block, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => block = Some((lang.trim().to_string(), Vec::new())),
            (Some((lang, body)), Some(_)) => {
                let body = body.join("\n");
                if lang.starts_with("yaml") {
                    out.extend(wpas_in(&body));
                } else {
                    out.extend(here_documents(&body).iter().flat_map(|d| wpas_in(d)));
                }
                block = None;
            }
            (Some((_, body)), None) => body.push(line),
            (None, None) => {}
        }
    }
    out
}

/// Every WPA shipped or printed, with where it is.
fn shipped(notes: &str, help: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut markdown = vec![repo().join("README.md"), repo().join("charts/wpa/README.md")];
    for dir in ["docs", "certs", "webhook-config"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("a folder").flatten() {
            if entry.path().extension().is_some_and(|e| e == "md") {
                markdown.push(entry.path());
            }
        }
    }
    for path in markdown {
        let text = std::fs::read_to_string(&path).expect("a Markdown file");
        let name = path.strip_prefix(repo()).unwrap_or(&path).display().to_string();
        out.extend(markdown_wpas(&text).into_iter().map(|w| (name.clone(), w)));
    }
    for entry in std::fs::read_dir(repo().join("examples")).expect("examples/").flatten() {
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(entry.path()).expect("an example");
            let name = format!("examples/{}", entry.file_name().to_string_lossy());
            out.extend(wpas_in(&text).into_iter().map(|w| (name.clone(), w)));
        }
    }
    out.extend(here_documents(notes).iter().flat_map(|d| wpas_in(d)).map(|w| ("NOTES.txt".to_string(), w)));
    out.extend(here_documents(help).iter().flat_map(|d| wpas_in(d)).map(|w| ("--help".to_string(), w)));
    out
}

/// NOTES.txt as the chart renders it with its defaults (tests/helm/chart.py, through Helm's library).
fn rendered_notes(dir: &Path) -> String {
    let out = std::process::Command::new("python3")
        .arg(repo().join("tests/helm/chart.py"))
        .args(["render", "--out"])
        .arg(dir)
        .args(["--label", "examples", "--kube-version", "v1.20.2"])
        .current_dir(repo())
        .output()
        .expect("python3 tests/helm/chart.py (bash scripts/test.sh e2e installs its Helm library)");
    assert!(out.status.success(), "chart.py render: {}", String::from_utf8_lossy(&out.stdout));
    std::fs::read_to_string(dir.join("examples.NOTES.txt")).expect("the rendered NOTES.txt")
}

/// Every command's `--help`, as a user reads it: the top level's, and that of every command and subcommand
/// it lists (read from the help itself, so a new command cannot be missed).
fn all_help() -> String {
    let mut text = String::new();
    let mut pending: Vec<Vec<String>> = vec![vec![]];
    while let Some(command) = pending.pop() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wpa"))
            .args(&command)
            .arg("--help")
            .output()
            .expect("wpa --help");
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        for sub in support::listed_commands(&help).into_iter().filter(|c| c != "help") {
            pending.push(command.iter().cloned().chain([sub]).collect());
        }
        text.push_str(&help);
        text.push('\n');
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_wpa_the_project_shows_is_accepted_by_the_webhook() {
    let cluster = TestCluster::start().await;
    cluster.install_crd(wpa::api::crd()).await.expect("the CRD");
    let (serve, _ca) =
        support::start_with_webhook(&cluster, "examples", &["--no-reconciler"]).await.expect("wpa serve");
    let examples = shipped(&rendered_notes(cluster.dir()), &all_help());
    let from = |place: &str| examples.iter().filter(|(w, _)| w == place).count();
    assert!(
        from("NOTES.txt") >= 1 && from("examples/wpa.yaml") >= 1,
        "the examples were found: {examples:?}"
    );
    let mut refused = Vec::new();
    for (place, wpa) in &examples {
        let namespace = wpa
            .lines()
            .find_map(|l| l.trim().strip_prefix("namespace:"))
            .map(|n| n.trim().trim_matches('"').to_string());
        if let Some(ns) = namespace.filter(|ns| ns != "default") {
            let _ = cluster.kubectl(&["create", "namespace", &ns]);
        }
        let out = cluster.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], wpa);
        if !out.status.success() {
            refused.push(format!("{place}: {}\n{wpa}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    eprintln!("{} shipped WPAs applied", examples.len());
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n\n"));
    drop(serve);
}
