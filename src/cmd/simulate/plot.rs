//! The simulation as an SVG: one panel per metric (the value the engine compared against both watermarks
//! and the tolerance band) and one panel for the replica count (with the metrics' proposal before limits,
//! minReplicas and maxReplicas, a mark at each scale and a shade where a window or a delay held one back),
//! sharing the time axis: UTC clock times when the series has them, as the table prints them.
//!
//! Written by hand: Rust plotting crates need a bundled font to lay text out, and this chart needs only
//! lines, ticks and labels.

use std::fmt::Write;

use super::{Report, ts};
use crate::engine::PlainStatus;

const PLOT_WIDTH: f64 = 690.0;
const LEFT: f64 = 80.0;
/// The legend's least width, and the width of a character of its 12 px sans-serif text (an upper bound
/// of the average, so that a long metric name is never clipped).
const RIGHT: f64 = 190.0;
const CHAR_WIDTH: f64 = 7.2;
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

/// A legend entry, its colour, its stroke and its points (in segments: a gap where there is no value).
type Series<'a> = (String, &'a str, Line, Vec<Vec<(f64, f64)>>);

struct Panel<'a> {
    title: String,
    y_label: &'a str,
    series: Vec<Series<'a>>,
    lo: f64,
    hi: f64,
    /// The replica panel's marks (none on a metric's panel).
    marks: Option<Marks>,
}

/// Where the count moved and the spans (from, to) in which a forbidden window or a watermark delay held a
/// scale back: what a reader looks for first on the plot.
struct Marks {
    scales: Vec<Scale>,
    waiting: Vec<(f64, f64)>,
}

/// A step that moved the count: when, to what, which way.
struct Scale {
    t: f64,
    replicas: f64,
    up: bool,
}

/// How a legend entry of the marks is drawn.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    Up,
    Down,
    Shade,
}

const SCALE_UP: (&str, &str) = ("scale-up", "#d62728");
const SCALE_DOWN: (&str, &str) = ("scale-down", "#2ca02c");
const WAITING: (&str, &str) = ("waiting: a window or a delay", "#fbe9c6");

impl Marks {
    fn of(report: &Report, duration: f64) -> Marks {
        let steps = &report.steps;
        // The first step moves the count too when the start is outside minReplicas..maxReplicas.
        let before = std::iter::once(report.initial_replicas).chain(steps.iter().map(|s| s.replicas));
        let scales = steps
            .iter()
            .zip(before)
            .filter(|(s, before)| s.replicas != *before)
            .map(|(s, before)| Scale { t: s.t, replicas: f64::from(s.replicas), up: s.replicas > before })
            .collect();
        let mut waiting: Vec<(f64, f64)> = Vec::new();
        for s in steps.iter().filter(|s| matches!(s.plain, PlainStatus::Waiting { .. })) {
            let end = (s.t + report.step).min(duration);
            match waiting.last_mut() {
                Some(last) if last.1 >= s.t => last.1 = end,
                _ => waiting.push((s.t, end)),
            }
        }
        Marks { scales, waiting }
    }

    /// The legend entries the marks add: text, colour, how it is drawn.
    fn legend(&self) -> Vec<(&'static str, &'static str, Key)> {
        let mut out = Vec::new();
        if self.scales.iter().any(|m| m.up) {
            out.push((SCALE_UP.0, SCALE_UP.1, Key::Up));
        }
        if self.scales.iter().any(|m| !m.up) {
            out.push((SCALE_DOWN.0, SCALE_DOWN.1, Key::Down));
        }
        if !self.waiting.is_empty() {
            out.push((WAITING.0, WAITING.1, Key::Shade));
        }
        out
    }
}

/// A triangle pointing up above (x, y), or down below it.
fn triangle(x: f64, y: f64, up: bool) -> String {
    let (tip, base) = if up { (y - 10.0, y - 2.0) } else { (y + 10.0, y + 2.0) };
    format!("{x:.1},{tip:.1} {:.1},{base:.1} {:.1},{base:.1}", x - 5.0, x + 5.0)
}

/// The time axis: ticks (seconds since the first sample, label) and its title.
struct TimeAxis {
    ticks: Vec<(f64, String)>,
    title: String,
}

/// Clock ticks at round UTC times when the series has real timestamps; otherwise seconds, minutes or
/// hours since the first sample.
fn time_axis(report: &Report, duration: f64) -> TimeAxis {
    let Some(start) = report.wall_clock_start else {
        let (unit, div) = if duration > 3.0 * 3600.0 {
            ("h", 3600.0)
        } else if duration > 180.0 {
            ("min", 60.0)
        } else {
            ("s", 1.0)
        };
        return TimeAxis {
            ticks: ticks(0.0, duration / div, 10.0).into_iter().map(|t| (t * div, label(t))).collect(),
            title: format!("time since the first sample ({unit})"),
        };
    };
    const STEPS: [f64; 20] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0,
        21600.0, 43200.0, 86400.0, 172800.0, 604800.0,
    ];
    let day = |t: f64| ts(t).strftime("%Y-%m-%d").to_string();
    let one_day = day(start) == day(start + duration);
    // Labels with a date are wider: fewer of them.
    let most = if one_day { 10.0 } else { 6.0 };
    let step = STEPS.iter().copied().find(|s| duration / s <= most).unwrap_or(604800.0);
    let format = if step >= 86400.0 {
        "%Y-%m-%d"
    } else if !one_day {
        "%m-%d %H:%M"
    } else if step < 60.0 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    let mut at = (start / step).ceil() * step;
    let mut out = Vec::new();
    while at <= start + duration + 1e-6 && out.len() < 50 {
        out.push((at - start, ts(at).strftime(format).to_string()));
        at += step;
    }
    let title = if one_day { format!("time (UTC), {}", day(start)) } else { "time (UTC)".to_string() };
    TimeAxis { ticks: out, title }
}

/// A count over time as a step function: each value holds until the next step. `None` leaves a gap.
fn stairs(points: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut segments: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (t, v) in points {
        match v {
            Some(v) => {
                if let Some(&(_, prev)) = current.last() {
                    current.push((t, prev));
                }
                current.push((t, v));
            }
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// Renders the report.
pub(crate) fn render_svg(report: &Report) -> String {
    let steps = &report.steps;
    let duration = steps.last().map_or(1.0, |s| s.t).max(1.0);
    let axis = time_axis(report, duration);

    let mut panels: Vec<Panel> = Vec::new();
    for (name, band) in &report.bands {
        // What the engine compared with the watermarks: per ready pod with `average`.
        let points: Vec<(f64, f64)> =
            steps.iter().filter_map(|s| s.compared.get(name).map(|v| (s.t, *v))).collect();
        let unit = |milli: f64| milli / 1000.0;
        let (high, low) = (unit(band.high_milli as f64), unit(band.low_milli as f64));
        let (adjusted_high, adjusted_low) = (unit(band.adjusted_high), unit(band.adjusted_low));
        let max_v = points.iter().map(|p| p.1).fold(adjusted_high.max(high), f64::max);
        let hi = if max_v > 0.0 { max_v * 1.1 } else { 1.0 };
        let edge = |y: f64| vec![vec![(0.0, y), (duration, y)]];
        let what = if report.average { "value per ready pod" } else { "value" };
        panels.push(Panel {
            title: format!("{name}: {what} against the watermarks"),
            y_label: if report.average { "per ready pod (metric units)" } else { "value (metric units)" },
            series: vec![
                (name.clone(), "#1f77b4", Line::Solid, vec![points]),
                (format!("high watermark ({})", label(high)), "#d62728", Line::Dashed, edge(high)),
                (
                    format!("  + tolerance ({})", label(adjusted_high)),
                    "#d62728",
                    Line::Dotted,
                    edge(adjusted_high),
                ),
                (format!("low watermark ({})", label(low)), "#2ca02c", Line::Dashed, edge(low)),
                (
                    format!("  − tolerance ({})", label(adjusted_low)),
                    "#2ca02c",
                    Line::Dotted,
                    edge(adjusted_low),
                ),
            ],
            lo: 0.0,
            hi,
            marks: None,
        });
    }
    let (min, max) = (f64::from(report.min_replicas), f64::from(report.max_replicas));
    let top = steps.iter().map(|s| f64::from(s.replicas)).fold(max, f64::max).max(1.0);
    // A proposal beyond maxReplicas is in view up to twice the top count, and drawn at the edge above it.
    let asked = report.summary.highest_proposal.map_or(0.0, f64::from).min(2.0 * top);
    let line = |y: f64| vec![vec![(0.0, y), (duration, y)]];
    panels.push(Panel {
        title: "replicas after each step, and what the metrics asked for".into(),
        y_label: "replicas",
        series: vec![
            (
                "replicas".into(),
                "#111111",
                Line::Solid,
                stairs(steps.iter().map(|s| (s.t, Some(f64::from(s.replicas))))),
            ),
            (
                "proposal (before limits)".into(),
                "#ff7f0e",
                Line::Dotted,
                stairs(steps.iter().map(|s| (s.t, s.proposal.map(f64::from)))),
            ),
            (format!("maxReplicas ({max})"), "#9467bd", Line::Dashed, line(max)),
            (format!("minReplicas ({min})"), "#8c564b", Line::Dashed, line(min)),
        ],
        lo: 0.0,
        hi: (top.max(asked) * 1.1).ceil().max(top + 1.0),
        marks: Some(Marks::of(report, duration)),
    });

    let longest = panels
        .iter()
        .flat_map(|p| &p.series)
        .map(|s| s.0.chars().count())
        .chain(panels.iter().filter_map(|p| p.marks.as_ref()).flat_map(|m| m.legend()).map(|l| l.0.len()))
        .max()
        .unwrap_or(0);
    let right = RIGHT.max(14.0 + 28.0 + longest as f64 * CHAR_WIDTH + 10.0);
    let width = LEFT + PLOT_WIDTH + right;
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 20.0;
    let plot_w = PLOT_WIDTH;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
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
        // The shade goes first, under the frame, the grid and every line.
        for (from, to) in p.marks.iter().flat_map(|m| &m.waiting) {
            let _ = write!(
                svg,
                r#"<rect class="waiting" x="{:.1}" y="{y0}" width="{:.1}" height="{PANEL}" fill="{}"/>"#,
                x(*from),
                (x(*to) - x(*from)).max(0.5),
                WAITING.1
            );
        }
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
        for (t, text) in &axis.ticks {
            let xx = x(*t);
            let _ = write!(
                svg,
                r##"<line x1="{xx}" y1="{}" x2="{xx}" y2="{}" stroke="#888"/><text x="{xx}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + PANEL,
                y0 + PANEL + 5.0,
                y0 + PANEL + 18.0,
                esc(text)
            );
        }
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            y0 + PANEL + 34.0,
            esc(&axis.title)
        );
        let (lx, ly) = (18.0, y0 + PANEL / 2.0);
        let _ = write!(
            svg,
            r#"<text x="{lx}" y="{ly}" text-anchor="middle" transform="rotate(-90 {lx} {ly})">{}</text>"#,
            esc(p.y_label)
        );
        for (j, (name, color, dashed, segments)) in p.series.iter().enumerate() {
            let dash = match dashed {
                Line::Solid => "",
                Line::Dashed => r#" stroke-dasharray="6 4""#,
                Line::Dotted => r#" stroke-dasharray="2 3""#,
            };
            for pts in segments.iter().filter(|s| !s.is_empty()) {
                let path: Vec<String> =
                    pts.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(v.clamp(p.lo, p.hi)))).collect();
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
        let Some(marks) = &p.marks else { continue };
        for m in &marks.scales {
            let (class, color) = if m.up { SCALE_UP } else { SCALE_DOWN };
            let _ = write!(
                svg,
                r#"<polygon class="{class}" fill="{color}" points="{}"/>"#,
                triangle(x(m.t), y(m.replicas.clamp(p.lo, p.hi)), m.up)
            );
        }
        for (k, (text, color, how)) in marks.legend().into_iter().enumerate() {
            let (kx, ky) = (LEFT + plot_w + 14.0, y0 + 14.0 + (p.series.len() + k) as f64 * 18.0);
            // Each key centred on its row, as the lines' keys are.
            let key = match how {
                Key::Shade => {
                    format!(r#"<rect x="{kx}" y="{}" width="22" height="10" fill="{color}"/>"#, ky - 5.0)
                }
                Key::Up => {
                    format!(r#"<polygon fill="{color}" points="{}"/>"#, triangle(kx + 11.0, ky + 5.0, true))
                }
                Key::Down => {
                    format!(r#"<polygon fill="{color}" points="{}"/>"#, triangle(kx + 11.0, ky - 5.0, false))
                }
            };
            let _ = write!(svg, r#"{key}<text x="{}" y="{}">{text}</text>"#, kx + 28.0, ky + 4.0);
        }
    }
    svg.push_str("</svg>\n");
    svg
}
