//! The report as text: a table for people (the steps, then a summary in words), CSV and JSON.

use std::fmt::Write as _;

use super::{Report, Rows, Step};
use crate::engine::plain::duration_words;

/// A step to print, and how many changes of status were left out after it (before the next printed step).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) index: usize,
    pub(crate) left_out: usize,
}

/// The steps to print. With [`Rows::Changes`]: the first and the last step, every step whose replica count
/// differs from the step before, and, between two such changes of the count, the first step of each new
/// status (a countdown or a moving value is not new; a value that keeps crossing the band edge would
/// otherwise print two rows per crossing).
pub(crate) fn selected(report: &Report, rows: Rows) -> Vec<Row> {
    let steps = &report.steps;
    let mut out: Vec<Row> = Vec::new();
    let mut seen: Vec<&crate::engine::PlainStatus> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let count_changed = i > 0 && step.replicas != steps[i - 1].replicas;
        if count_changed {
            seen.clear();
        }
        let new_status = i > 0 && !step.plain.same_kind(&steps[i - 1].plain);
        let first_of_its_kind = !seen.iter().any(|s| s.same_kind(&step.plain));
        if rows == Rows::All || i == 0 || i + 1 == steps.len() || count_changed || first_of_its_kind {
            out.push(Row { index: i, left_out: 0 });
        } else if new_status && let Some(last) = out.last_mut() {
            last.left_out += 1;
        }
        if first_of_its_kind {
            seen.push(&step.plain);
        }
    }
    out
}

fn clock(report: &Report, t: f64) -> String {
    match report.wall_clock_start {
        Some(start) => super::ts(start + t).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        None => format!("{t}"),
    }
}

fn fmt_value(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    })
}

/// The metric names, in spec order.
fn names(report: &Report) -> Vec<String> {
    report.steps.first().map(|s| s.metrics.0.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default()
}

/// The human-readable table: time, each metric (and, with `algorithm: average`, its value per ready pod,
/// the value compared with the band), the proposal, the replicas and what happened; then the summary.
pub(crate) fn table(report: &Report, rows: Rows) -> String {
    let names = names(report);
    let mut header = vec![if report.wall_clock_start.is_some() { "time (UTC)" } else { "t(s)" }.to_string()];
    for n in &names {
        header.push(n.clone());
        if report.average {
            header.push("per pod".into());
        }
    }
    header.extend(["proposal", "replicas", "status"].map(String::from));
    let shown = selected(report, rows);
    // Each row's cells, and the note printed under it.
    let mut lines: Vec<(Vec<String>, Option<String>)> = vec![(header, None)];
    for row in &shown {
        let s = &report.steps[row.index];
        let mut cells = vec![clock(report, s.t)];
        for (n, v) in &s.metrics.0 {
            cells.push(fmt_value(*v));
            if report.average {
                cells.push(fmt_value(s.compared.get(n).copied()));
            }
        }
        cells.push(s.proposal.map_or("-".into(), |p| p.to_string()));
        cells.push(s.replicas.to_string());
        cells.push(s.status.clone());
        let note = (row.left_out > 0).then(|| {
            format!("  … and {} more changes between the statuses above, at the same count", row.left_out)
        });
        lines.push((cells, note));
    }
    let cols = lines[0].0.len();
    let widths: Vec<usize> =
        (0..cols - 1).map(|c| lines.iter().map(|r| r.0[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (cells, note) in &lines {
        for (c, cell) in cells.iter().enumerate() {
            if c + 1 == cols {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push('\n');
        if let Some(note) = note {
            out.push_str(note);
            out.push('\n');
        }
    }
    if shown.len() < report.steps.len() {
        let _ = writeln!(
            out,
            "({} of {} steps: the first, the last, each change of the count and each new status; --all-steps prints every step)",
            shown.len(),
            report.steps.len()
        );
    }
    out.push('\n');
    out.push_str(&summary(report));
    out
}

/// The summary in words.
pub(crate) fn summary(report: &Report) -> String {
    let s = &report.summary;
    let per_pod = if report.average { " per pod" } else { "" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "summary: {} steps of {} over {}: {} scale-ups, {} scale-downs; replicas between {} and {}",
        s.steps,
        duration_words(report.step),
        duration_words(s.duration_seconds),
        s.scale_ups,
        s.scale_downs,
        s.min_replicas_seen,
        s.max_replicas_seen
    );
    if report.dry_run {
        let _ = writeln!(
            out,
            "  dry run: the target was never changed; {} decided a scale-up and {} a scale-down (as the count \
             never moves, each step its windows allow decides the same scale again: these are not the scales a \
             live WPA would make)",
            steps_word(s.dry_run_scale_ups),
            s.dry_run_scale_downs
        );
    }
    if let Some(delay) = report.cpu_pods_ready_within_delay {
        let _ = writeln!(
            out,
            "  cpu: each simulated pod becomes Ready within readinessDelaySeconds ({delay} s) of starting, which \
             upstream's rule ignores until its Ready condition changes (in a cluster too), so every cpu reading \
             fails; if your pods take {delay} s or more to become Ready, say how long with --ready-after"
        );
    }
    let asked = s.highest_proposal.map(|p| format!(" (the metrics asked for up to {p})")).unwrap_or_default();
    if s.seconds_at_max_replicas > 0.0 {
        let _ = writeln!(
            out,
            "  at maxReplicas {} for {}{asked}",
            report.max_replicas,
            duration_words(s.seconds_at_max_replicas)
        );
    } else {
        let _ = writeln!(out, "  never at maxReplicas {}{asked}", report.max_replicas);
    }
    let list = |f: &dyn Fn(&crate::engine::calc::Band) -> f64| {
        report
            .bands
            .iter()
            .map(|(name, b)| {
                let v = fmt_value(Some(f(b) / 1000.0));
                if report.bands.len() > 1 { format!("{name} {v}") } else { v }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "  outside the tolerance band (where the WPA acts): above it (over {}{per_pod}) for {}, below it (under {}{per_pod}) for {}",
        list(&|b| b.adjusted_high),
        duration_words(s.seconds_above_band),
        list(&|b| b.adjusted_low),
        duration_words(s.seconds_below_band),
    );
    let _ = writeln!(
        out,
        "  outside the watermarks themselves: above the high watermark ({}{per_pod}) for {}, below the low watermark ({}{per_pod}) for {}",
        list(&|b| b.high_milli as f64),
        duration_words(s.seconds_above_high_watermark),
        list(&|b| b.low_milli as f64),
        duration_words(s.seconds_below_low_watermark),
    );
    out
}

/// CSV: `t,<metric>...,proposal,desired,replicas,scaled,reason,limit,status`.
pub(crate) fn csv(report: &Report, rows: Rows) -> String {
    let names = names(report);
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["t".to_string()];
    header.extend(names.iter().cloned());
    header
        .extend(["proposal", "desired", "replicas", "scaled", "reason", "limit", "status"].map(String::from));
    let _ = w.write_record(&header);
    for row in selected(report, rows) {
        let s = &report.steps[row.index];
        let mut row = vec![s.t.to_string()];
        row.extend(s.metrics.0.iter().map(|(_, v)| v.map_or(String::new(), |v| v.to_string())));
        row.push(s.proposal.map_or(String::new(), |p| p.to_string()));
        row.extend([
            s.desired.to_string(),
            s.replicas.to_string(),
            s.scaled.to_string(),
            s.reason.clone(),
            s.limit.unwrap_or_default().to_string(),
            s.status.clone(),
        ]);
        let _ = w.write_record(&row);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// `{"steps":[...],"summary":{...}}`.
pub(crate) fn json(report: &Report, rows: Rows) -> String {
    #[derive(serde::Serialize)]
    struct View<'a> {
        steps: Vec<&'a Step>,
        summary: &'a super::Summary,
    }
    let view = View {
        steps: selected(report, rows).into_iter().map(|r| &report.steps[r.index]).collect(),
        summary: &report.summary,
    };
    serde_json::to_string(&view).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

/// `1 step`, `3 steps`.
fn steps_word(n: usize) -> String {
    if n == 1 { "1 step".into() } else { format!("{n} steps") }
}
