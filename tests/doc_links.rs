//! The README and docs/ link to each other by relative paths and `#anchors`: every such link must lead to a
//! file of the repository and, with an anchor, to a heading of that file (as GitHub makes anchors).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Files other branches create (docs/performance.md for issue 27, docs/status.md with `wpa status`'s docs):
/// a link to one of them is accepted while it is absent. Empty this list once they are merged.
const PENDING: &[&str] = &["docs/performance.md", "docs/status.md"];

/// The Markdown files a user reads: the README, docs/, and the other READMEs.
fn documents() -> Vec<PathBuf> {
    let mut files =
        vec![repo().join("README.md"), repo().join("charts/wpa/README.md"), repo().join("certs/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text's headings (outside code blocks), with GitHub's `-1`, `-2` for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code || !line.starts_with('#') {
            continue;
        }
        let base = anchor(line.trim_start_matches('#'));
        let mut a = base.clone();
        let mut n = 0;
        while out.contains(&a) {
            n += 1;
            a = format!("{base}-{n}");
        }
        out.insert(a);
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown text, outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Code spans may hold `](`; drop them first.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let Some(end) = rest.find(')') else { break };
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

fn broken_links() -> Vec<String> {
    let mut broken = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("a Markdown file");
        let name = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let dest =
                if path.is_empty() { file.clone() } else { file.parent().expect("a folder").join(path) };
            let Ok(dest) = dest.canonicalize() else {
                let relative = Path::new(&name).parent().unwrap_or(Path::new("")).join(path);
                let relative = relative.to_string_lossy().replace("docs/../", "");
                if !PENDING.contains(&relative.as_str()) {
                    broken.push(format!("{name}: ({target}): no such file"));
                }
                continue;
            };
            if fragment.is_empty() || dest.is_dir() || dest.extension().is_none_or(|e| e != "md") {
                continue;
            }
            let dest_text = std::fs::read_to_string(&dest).expect("a linked Markdown file");
            if !anchors(&dest_text).contains(fragment) {
                broken.push(format!("{name}: ({target}): no heading with that anchor"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_of_the_readme_and_docs_leads_to_a_file_and_heading() {
    let broken = broken_links();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# wpa — a Watermark Pod Autoscaler\n## See a live WPA's decision: `wpa explain`\n\
                ```sh\n# not a heading\n```\n## Upgrade\n## Upgrade\n### 6.10 Normalization (`x`)\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(
        got,
        [
            "610-normalization-x",
            "see-a-live-wpas-decision-wpa-explain",
            "upgrade",
            "upgrade-1",
            "wpa--a-watermark-pod-autoscaler",
        ]
    );
}

#[test]
fn links_in_code_are_not_links() {
    let text = "see [a](docs/a.md#x) and `[b](nope.md)`\n```\n[c](nope2.md)\n```\n";
    assert_eq!(links(text), ["docs/a.md#x"]);
}

/// The README's plot (docs/simulation.svg) is what `wpa simulate` draws today for the README's command; set
/// WPA_UPDATE_REFERENCE=1 to redraw it after a change of the plot or the examples.
#[test]
fn the_readme_plot_is_what_simulate_draws_for_the_readme_command() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fresh = dir.path().join("simulation.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wpa"))
        .args([
            "simulate",
            "--wpa",
            "examples/wpa.yaml",
            "--series",
            "examples/series.csv",
            "--ready-after",
            "30",
        ])
        .arg("--plot")
        .arg(&fresh)
        .current_dir(repo())
        .output()
        .expect("wpa simulate");
    assert!(out.status.success(), "wpa simulate: {}", String::from_utf8_lossy(&out.stderr));
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    assert!(
        readme.contains("--series examples/series.csv --ready-after 30 --plot simulation.svg")
            && readme.contains("](docs/simulation.svg)"),
        "the README shows the plot of this command"
    );
    let fresh = std::fs::read_to_string(&fresh).expect("the plot");
    let committed = repo().join("docs/simulation.svg");
    if std::env::var_os("WPA_UPDATE_REFERENCE").is_some() {
        std::fs::write(&committed, &fresh).expect("rewrite docs/simulation.svg");
    }
    let committed = std::fs::read_to_string(&committed).expect("docs/simulation.svg");
    assert!(
        committed == fresh,
        "docs/simulation.svg is not what wpa simulate draws today: redraw it with \
         `WPA_UPDATE_REFERENCE=1 cargo test --test doc_links`"
    );
}
