//! The simulation as an SVG: one panel per metric (value against both watermarks) and one panel for the
//! replica count, sharing the time axis.
//!
//! Written by hand: Rust plotting crates need a bundled font to lay text out, and this chart needs only
//! lines, ticks and labels.

use std::fmt::Write;

use super::Report;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const PANEL: f64 = 190.0;
const GAP: f64 = 60.0;
const TOP: f64 = 50.0;

fn nice_step(range: f64, target_ticks: f64) -> f64 {
    let raw = (range / target_ticks).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn ticks(lo: f64, hi: f64, target: f64) -> Vec<f64> {
    let step = nice_step(hi - lo, target);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 && out.len() < 50 {
        out.push(t);
        t += step;
    }
    out
}

fn label(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[derive(Clone, Copy, PartialEq)]
enum Line {
    Solid,
    Dashed,
    Dotted,
}

/// A legend entry, its colour, its stroke and its points.
type Series<'a> = (String, &'a str, Line, Vec<(f64, f64)>);

struct Panel<'a> {
    title: String,
    y_label: &'a str,
    series: Vec<Series<'a>>,
    lo: f64,
    hi: f64,
}

/// Renders the report; the time axis is in minutes or hours since the first sample.
pub(crate) fn render_svg(report: &Report) -> String {
    let steps = &report.steps;
    let duration = steps.last().map_or(1.0, |s| s.t).max(1.0);
    let (unit, div) = if duration > 3.0 * 3600.0 {
        ("h", 3600.0)
    } else if duration > 180.0 {
        ("min", 60.0)
    } else {
        ("s", 1.0)
    };
    let names: Vec<String> = steps.first().map(|s| s.metrics.keys().cloned().collect()).unwrap_or_default();

    let mut panels: Vec<Panel> = Vec::new();
    for name in &names {
        // What the engine compared with the watermarks: per ready pod with `average`.
        let points: Vec<(f64, f64)> =
            steps.iter().filter_map(|s| s.compared.get(name).map(|v| (s.t, *v))).collect();
        let band = report.watermarks.get(name).copied().unwrap_or_default();
        let max_v = points.iter().map(|p| p.1).fold(band.adjusted_high.max(band.high), f64::max);
        let hi = if max_v > 0.0 { max_v * 1.1 } else { 1.0 };
        let edge = |y: f64| vec![(0.0, y), (duration, y)];
        let what = if report.average { "value per ready pod" } else { "value" };
        panels.push(Panel {
            title: format!("{name}: {what} against the watermarks"),
            y_label: if report.average { "per ready pod (metric units)" } else { "value (metric units)" },
            series: vec![
                (name.clone(), "#1f77b4", Line::Solid, points),
                (format!("high watermark ({})", label(band.high)), "#d62728", Line::Dashed, edge(band.high)),
                (
                    format!("  + tolerance ({})", label(band.adjusted_high)),
                    "#d62728",
                    Line::Dotted,
                    edge(band.adjusted_high),
                ),
                (format!("low watermark ({})", label(band.low)), "#2ca02c", Line::Dashed, edge(band.low)),
                (
                    format!("  − tolerance ({})", label(band.adjusted_low)),
                    "#2ca02c",
                    Line::Dotted,
                    edge(band.adjusted_low),
                ),
            ],
            lo: 0.0,
            hi,
        });
    }
    // Replicas as a step function: the count holds until the next step.
    let mut stairs = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if i > 0 {
            stairs.push((s.t, steps[i - 1].replicas as f64));
        }
        stairs.push((s.t, s.replicas as f64));
    }
    let max_r = steps.iter().map(|s| s.replicas).max().unwrap_or(1).max(1) as f64;
    panels.push(Panel {
        title: "replicas after each step".into(),
        y_label: "replicas",
        series: vec![("replicas".into(), "#111111", Line::Solid, stairs)],
        lo: 0.0,
        hi: (max_r * 1.15).ceil().max(max_r + 1.0),
    });

    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 20.0;
    let plot_w = WIDTH - LEFT - RIGHT;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let s = &report.summary;
    let _ = write!(
        svg,
        r#"<text x="{LEFT}" y="24" font-size="16" font-weight="bold">wpa simulate: {} steps, {} scale-ups, {} scale-downs, replicas {}–{}</text>"#,
        s.steps, s.scale_ups, s.scale_downs, s.min_replicas_seen, s.max_replicas_seen
    );
    for (i, p) in panels.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL + GAP);
        let x = |t: f64| LEFT + t / duration * plot_w;
        let y = |v: f64| y0 + PANEL - (v - p.lo) / (p.hi - p.lo) * PANEL;
        let _ =
            write!(svg, r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#, y0 - 8.0, esc(&p.title));
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
        );
        for t in ticks(p.lo, p.hi, 5.0) {
            let yy = y(t);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                yy + 4.0,
                label(t)
            );
        }
        for t in ticks(0.0, duration / div, 10.0) {
            let xx = x(t * div);
            let _ = write!(
                svg,
                r##"<line x1="{xx}" y1="{}" x2="{xx}" y2="{}" stroke="#888"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + PANEL,
                y0 + PANEL + 5.0,
                y0 + PANEL + 18.0,
                label(t)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">time since the first sample ({unit})</text>"#,
            LEFT + plot_w / 2.0,
            y0 + PANEL + 34.0
        );
        let (lx, ly) = (18.0, y0 + PANEL / 2.0);
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ly}" text-anchor="middle" transform="rotate(-90 {lx} {ly})">{}</text>"#,
            esc(p.y_label)
        );
        for (j, (name, color, dashed, pts)) in p.series.iter().enumerate() {
            let path: Vec<String> =
                pts.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(v.clamp(p.lo, p.hi)))).collect();
            let dash = match dashed {
                Line::Solid => "",
                Line::Dashed => r#" stroke-dasharray="6 4""#,
                Line::Dotted => r#" stroke-dasharray="2 3""#,
            };
            if !path.is_empty() {
                let _ = write!(
                    svg,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
                    path.join(" ")
                );
            }
            let (kx, ky) = (LEFT + plot_w + 14.0, y0 + 14.0 + j as f64 * 18.0);
            let _ = write!(
                svg,
                r#"<line x1="{kx}" y1="{ky}" x2="{}" y2="{ky}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                kx + 22.0,
                kx + 28.0,
                ky + 4.0,
                esc(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
