//! The docs cannot drift from the code: docs/reference.md's flag section is generated from the commands' own
//! `--help`; every `wpa` command line printed in the README, docs/ or a command's `Examples:` parses (flags
//! that exist, values the flags accept); every relative link of the README and docs/ leads to a file and a
//! heading; and the README's plot is what `wpa simulate` draws today.
//!
//! `WPA_UPDATE_REFERENCE=1 cargo test --lib docs_tests` rewrites the generated section and the plot.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use clap::CommandFactory;

use super::{Cli, Command, parse, simulate, upstream_flags};

const REFERENCE: &str = "docs/reference.md";
const BEGIN: &str = "<!-- BEGIN GENERATED: every command's --help (src/cmd/docs_tests.rs) -->";
const END: &str = "<!-- END GENERATED -->";
/// Set to rewrite what the docs show of the code (the flag section, the plot) after a change of it.
const UPDATE: &str = "WPA_UPDATE_REFERENCE";

/// `wpa bench` is left to docs/performance.md: benchmark flags are for the people who run them.
const NOT_IN_REFERENCE: &[&str] = &["bench"];

/// Files other branches create (docs/performance.md for issue 27, docs/status.md with `wpa status`'s docs):
/// a link to one of them is accepted while it is absent. Empty this list once they are merged.
const PENDING: &[&str] = &[];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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

/// A Markdown text's lines, each with the language of the code block it is in (`None` for prose), fences left
/// out.
fn lines_of(text: &str) -> Vec<(Option<&str>, &str)> {
    let mut out = Vec::new();
    let mut block: Option<&str> = None;
    for line in text.lines() {
        match (block, line.trim_start().strip_prefix("```")) {
            (None, Some(lang)) => block = Some(lang.trim()),
            (Some(_), Some(_)) => block = None,
            (_, None) => out.push((block, line)),
        }
    }
    out
}

fn prose(text: &str) -> impl Iterator<Item = &str> {
    lines_of(text).into_iter().filter(|(block, _)| block.is_none()).map(|(_, line)| line)
}

/// Each command's long help (what `wpa COMMAND --help` prints), at a fixed width, with the names of the
/// environment variables but not their values in this process (a KUBECONFIG set here is nobody's default).
fn generated() -> String {
    let mut cli = Cli::command().term_width(110).max_term_width(110);
    cli = cli.mut_args(|a| a.hide_env_values(true));
    cli.build();
    let mut out = format!("{BEGIN}\n");
    out.push_str(&section("wpa", &mut cli));
    for sub in cli.get_subcommands_mut() {
        if !NOT_IN_REFERENCE.contains(&sub.get_name()) && sub.get_name() != "help" {
            walk(sub, &mut out);
        }
    }
    out.push_str(END);
    out
}

fn walk(cmd: &mut clap::Command, out: &mut String) {
    let mut cmd = cmd.clone().mut_args(|a| a.hide_env_values(true));
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_string();
    out.push_str(&section(&name, &mut cmd));
    for sub in cmd.get_subcommands_mut() {
        if sub.get_name() != "help" {
            walk(sub, out);
        }
    }
}

fn section(name: &str, cmd: &mut clap::Command) -> String {
    let help = cmd.render_long_help().to_string();
    let help: Vec<&str> = help.lines().map(str::trim_end).collect();
    format!("### `{name}`\n\n```text\n{}\n```\n\n", help.join("\n").trim_end())
}

#[test]
fn the_flag_reference_is_every_commands_help() {
    let path = repo().join(REFERENCE);
    let doc = std::fs::read_to_string(&path).expect("docs/reference.md");
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{REFERENCE} has no generated section: put the lines\n{BEGIN}\n{END}\nwhere it goes");
    };
    let committed = &doc[start..end + END.len()];
    let fresh = generated();
    if committed == fresh {
        return;
    }
    if std::env::var_os(UPDATE).is_some() {
        let rewritten = format!("{}{fresh}{}", &doc[..start], &doc[end + END.len()..]);
        std::fs::write(&path, rewritten).expect("rewrite docs/reference.md");
        return;
    }
    let first = committed.lines().zip(fresh.lines()).find(|(a, b)| a != b);
    panic!(
        "{REFERENCE} no longer matches the commands' --help (first difference: {first:?}); \
         rewrite it with `{UPDATE}=1 cargo test --lib docs_tests` and commit it"
    );
}

/// The command lines of a shell block (`sh`, `bash`, `console` with `$ `), continuation lines joined.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for (block, line) in lines_of(text) {
        if !matches!(block, Some("sh" | "bash" | "shell" | "console")) {
            continue;
        }
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line);
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        out.push(std::mem::take(&mut pending));
    }
    out
}

/// The code spans of a Markdown text's prose that are whole `wpa` command lines: a command with flags, not
/// just a command's name, and without placeholders (`<svc>`, `[--san NAME]...`, `a|b`) or quoted output (`wpa dry-run: ... not found`).
fn inline_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        for span in line.split('`').skip(1).step_by(2) {
            let words: Vec<&str> = span.split_whitespace().collect();
            let command = match words.as_slice() {
                ["wpa", sub, ..] | ["kubectl", "wpa", sub, ..] => sub.chars().all(|c| !c.is_uppercase()),
                _ => false,
            };
            let placeholder = ['<', '[', '|', ':'].iter().any(|c| span.contains(*c)) || span.contains("...");
            let has_flag = words.iter().any(|w| w.starts_with('-'));
            if command && has_flag && !placeholder {
                out.push(span.to_string());
            }
        }
    }
    out
}

/// The `wpa` invocations of a command line: `wpa`, `target/release/wpa`, `kubectl wpa` or `cargo run
/// --release --` as a command, up to a pipe, `&&`, `;`, a redirection or a comment.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let Some(words) = shlex::split(line.split(" #").next().unwrap_or(line)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        // A command starts a line or follows a separator or a prefix: `helm install wpa ...` runs helm.
        let at_start =
            i == 0 || ["sudo", "time", "exec", "&&", "||", ";", "|"].contains(&words[i - 1].as_str());
        let start = match w {
            _ if !at_start => None,
            "wpa" | "target/release/wpa" | "./target/release/wpa" => Some(("wpa", i + 1)),
            "kubectl" if words.get(i + 1).is_some_and(|n| n == "wpa") => Some(("kubectl-wpa", i + 2)),
            "cargo" if words.get(i + 1).is_some_and(|n| n == "run") => {
                words[i..].iter().position(|w| w == "--").map(|p| ("wpa", i + p + 1))
            }
            _ => None,
        };
        let Some((argv0, from)) = start else {
            i += 1;
            continue;
        };
        let end = words[from..]
            .iter()
            .position(|w| {
                ["|", "&&", "||", ";", ">", "2>&1", ")"].contains(&w.as_str()) || w.starts_with('>')
            })
            .map_or(words.len(), |p| from + p);
        let mut argv = vec![argv0.to_string()];
        argv.extend(words[from..end].iter().cloned());
        out.push(argv);
        i = end;
    }
    out
}

#[test]
fn every_wpa_command_line_in_the_docs_and_help_examples_parses() {
    let mut checked = 0;
    let mut refused = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("a Markdown file");
        let name = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        for line in shell_lines(&text).into_iter().chain(inline_lines(&text)) {
            for argv in invocations(&line) {
                checked += 1;
                let args = upstream_flags::apply(argv.iter().map(Into::into).collect());
                if let Err(e) = parse(args) {
                    let help = matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                    );
                    if !help {
                        refused.push(format!("{name}: `{line}`: {}", e.render().to_string().trim()));
                    }
                }
            }
        }
    }
    // The examples each command's --help ends with.
    let mut in_examples = false;
    for line in generated().lines() {
        in_examples = match line.trim() {
            "Examples:" => true,
            l if l.starts_with("```") => false,
            _ => in_examples,
        };
        let line = line.trim();
        if !in_examples || line.starts_with('#') {
            continue;
        }
        for argv in invocations(line) {
            checked += 1;
            if let Err(e) = parse(upstream_flags::apply(argv.iter().map(Into::into).collect())) {
                refused.push(format!("--help's example `{line}`: {}", e.render().to_string().trim()));
            }
        }
    }
    assert!(checked >= 40, "only {checked} wpa command lines found: is the extraction broken?");
    assert!(refused.is_empty(), "command lines the docs print that wpa refuses:\n{}", refused.join("\n"));
}

#[test]
fn the_shell_extraction_finds_wpa_in_every_form_it_is_written() {
    let text = "```sh\nwpa explain -n shop web   # a comment\nsudo target/release/wpa demo --keep\n\
                cargo run --release -- simulate --wpa a.yaml \\\n  --series b.csv | head\n\
                kubectl wpa dry-run list --all\nhelm install wpa charts/wpa -n wpa-system\n```\n```text\nwpa not --a-shell-block\n```\n";
    let found: Vec<Vec<String>> = shell_lines(text).iter().flat_map(|l| invocations(l)).collect();
    let joined: Vec<String> = found.iter().map(|a| a.join(" ")).collect();
    assert_eq!(
        joined,
        [
            "wpa explain -n shop web",
            "wpa demo --keep",
            "wpa simulate --wpa a.yaml --series b.csv",
            "kubectl-wpa dry-run list --all",
        ]
    );
}

#[test]
fn whole_command_lines_in_prose_are_checked_and_placeholders_are_not() {
    let text = "Run `wpa explain -n shop web` or `wpa serve --tls-san <svc>.<ns>.svc`, see `wpa dry-run enable`, \
                `kubectl wpa dry-run list -A`, `wpa COMMAND --help`, `wpa dry-run: WatermarkPodAutoscaler x not found`.";
    assert_eq!(inline_lines(text), ["wpa explain -n shop web", "kubectl wpa dry-run list -A"]);
}

#[test]
fn a_refused_value_in_a_doc_line_is_caught() {
    let argv = invocations("wpa serve --max-body-bytes-in-flight 32MiB").remove(0);
    assert!(parse(argv.iter().map(Into::into).collect()).is_err());
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
    for line in prose(text).filter(|l| l.starts_with('#')) {
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
    for line in prose(text) {
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

/// The README's plot (docs/simulation.svg) is what `wpa simulate` draws today for the README's command.
#[test]
fn the_readme_plot_is_what_simulate_draws_for_the_readme_command() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let command = "wpa simulate --wpa examples/wpa.yaml --series examples/series.csv --ready-after 30 --plot";
    assert!(
        readme.contains(&format!("{command} simulation.svg")) && readme.contains("](docs/simulation.svg)"),
        "the README shows the plot of this command"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fresh = dir.path().join("simulation.svg");
    let mut argv: Vec<std::ffi::OsString> = command.split_whitespace().map(Into::into).collect();
    argv.push(fresh.clone().into());
    for a in &mut argv[3..6] {
        if let Some(relative) = a.to_str().filter(|a| a.starts_with("examples/")) {
            *a = repo().join(relative).into();
        }
    }
    let Ok((Command::Simulate(args), _)) = parse(argv) else {
        panic!("the README's simulate command parses")
    };
    simulate::command(&args).expect("wpa simulate");
    let fresh = std::fs::read_to_string(&fresh).expect("the plot");
    let committed = repo().join("docs/simulation.svg");
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&committed, &fresh).expect("rewrite docs/simulation.svg");
    }
    let committed = std::fs::read_to_string(&committed).expect("docs/simulation.svg");
    assert!(
        committed == fresh,
        "docs/simulation.svg is not what wpa simulate draws today: redraw it with \
         `{UPDATE}=1 cargo test --lib docs_tests`"
    );
}
