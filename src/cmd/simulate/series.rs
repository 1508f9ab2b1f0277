//! The metric series a simulation replays: CSV with the header `timestamp,metric,value`.

use std::{collections::BTreeMap, path::Path};

use jiff::Timestamp;

use crate::api::quantity::Quantity;

/// A problem with an input file, reported as `FILE:LINE: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {problem}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub(crate) struct InputError {
    pub(crate) file: String,
    pub(crate) line: Option<u64>,
    pub(crate) problem: String,
}

impl InputError {
    /// A problem with `file` (`-`: stdin) at `line`, if known.
    pub(crate) fn new(file: &Path, line: Option<u64>, problem: impl Into<String>) -> Self {
        let file = if file == Path::new("-") { "<stdin>".to_string() } else { file.display().to_string() };
        InputError { file, line, problem: problem.into() }
    }
}

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the Unix epoch (fractional allowed).
    pub(crate) at: f64,
    pub(crate) metric: String,
    /// The value, and exactly as the metrics API would serve it (milli-units); `None`: an empty value field,
    /// the metric's outage from this sample to its next one.
    pub(crate) value: Option<(f64, i64)>,
}

/// A parsed series: samples in file order, and whether timestamps were wall-clock times.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Series {
    pub(crate) samples: Vec<Sample>,
    pub(crate) wall_clock: bool,
}

impl Series {
    pub(crate) fn first(&self) -> f64 {
        self.samples.first().map_or(0.0, |s| s.at)
    }
    pub(crate) fn last(&self) -> f64 {
        self.samples.last().map_or(0.0, |s| s.at)
    }
}

/// How a file writes its timestamps: decided by its first one, and the same for every other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeForm {
    Rfc3339,
    /// Seconds from any origin (such as 0): no clock.
    Seconds,
    UnixSeconds,
    UnixMilliseconds,
}

/// Numbers at least this large are Unix seconds (from 2001-09-09 on): a series counted from 0 would have to
/// span 31 years to reach it.
const UNIX_SECONDS_FROM: f64 = 1e9;
/// Numbers at least this large are Unix milliseconds (from 1973-03-03 on): read as seconds, they would be
/// past the year 5000.
const UNIX_MILLISECONDS_FROM: f64 = 1e11;

impl TimeForm {
    fn name(self) -> &'static str {
        match self {
            TimeForm::Rfc3339 => "an RFC 3339 time",
            TimeForm::Seconds => "seconds counted from 0 (below 1000000000)",
            TimeForm::UnixSeconds => "Unix seconds",
            TimeForm::UnixMilliseconds => "Unix milliseconds (100000000000 or more)",
        }
    }

    fn wall_clock(self) -> bool {
        self != TimeForm::Seconds
    }
}

/// Seconds since the Unix epoch (or since 0 for [`TimeForm::Seconds`]), and the form the timestamp is in.
fn parse_time(raw: &str) -> Result<(f64, TimeForm), String> {
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<f64>()
        && n.is_finite()
    {
        return Ok(if n >= UNIX_MILLISECONDS_FROM {
            (n / 1000.0, TimeForm::UnixMilliseconds)
        } else if n >= UNIX_SECONDS_FROM {
            (n, TimeForm::UnixSeconds)
        } else {
            (n, TimeForm::Seconds)
        });
    }
    raw.parse::<Timestamp>().map(|t| (t.as_millisecond() as f64 / 1000.0, TimeForm::Rfc3339)).map_err(|_| {
        format!(
            "timestamp {raw:?} is not RFC 3339 (2024-05-01T12:00:00Z), Unix seconds or milliseconds, or seconds from 0"
        )
    })
}

/// The most engine runs a simulation makes: a year at the default 15 s step is 2.1 million.
const MAX_STEPS: f64 = 10_000_000.0;

/// Reads and checks a series (`-`: stdin). `metrics` are the names the WPA knows (metricName or resource
/// name); `step` the seconds between two engine runs.
pub(crate) fn read_series(path: &Path, metrics: &[String], step: f64) -> Result<Series, InputError> {
    let series = parse_series(path, &super::read_input(path)?, metrics)?;
    let steps = (series.last() - series.first()) / step;
    if steps > MAX_STEPS {
        return Err(InputError::new(
            path,
            None,
            format!(
                "the series spans {:.0} s, {steps:.0} steps of {step} s (at most {MAX_STEPS:.0}): check the timestamps' unit, or give a larger --step",
                series.last() - series.first()
            ),
        ));
    }
    Ok(series)
}

pub(crate) fn parse_series(path: &Path, text: &str, metrics: &[String]) -> Result<Series, InputError> {
    let mut reader =
        csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| InputError::new(path, Some(1), e.to_string()))?.clone();
    let names: Vec<&str> = headers.iter().collect();
    if names != ["timestamp", "metric", "value"] {
        return Err(InputError::new(
            path,
            Some(1),
            format!("the header must be `timestamp,metric,value`, found `{}`", names.join(",")),
        ));
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut time_form = None;
    let mut previous_time = String::new();
    let mut last_per_metric: BTreeMap<String, f64> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line());
            InputError::new(path, line, e.to_string())
        })?;
        let line = record.position().map(|p| p.line());
        let err = |problem: String| InputError::new(path, line, problem);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != 3 {
            return Err(err(format!("expected 3 fields (timestamp,metric,value), found {}", record.len())));
        }
        let (at, form) = parse_time(&record[0]).map_err(err)?;
        let first = *time_form.get_or_insert(form);
        if form != first {
            return Err(err(format!(
                "timestamp {} is {}, but the file's first timestamp is {}: use one form for the whole file",
                record[0].trim(),
                form.name(),
                first.name()
            )));
        }
        let metric = record[1].to_string();
        if !metrics.contains(&metric) {
            return Err(err(format!(
                "unknown metric {metric:?}; the WPA's metrics are: {}",
                metrics.join(", ")
            )));
        }
        let raw = record[2].trim();
        let value = if raw.is_empty() {
            None
        } else {
            let q = Quantity::parse(raw)
                .map_err(|_| err(format!("value {raw:?} is not a number (leave it empty for an outage)")))?;
            if q.milli() < 0 {
                return Err(err(format!("value {raw} is negative; metric values cannot be negative")));
            }
            // The engine counts in thousandths in 64 bits, as upstream's MilliValue: a value past that would
            // be read as the largest one, silently.
            if q.milli() == i64::MAX {
                return Err(err(format!(
                    "value {raw} is too large: the engine reads values up to {} (thousandths in 64 bits)",
                    i64::MAX / 1000
                )));
            }
            Some((q.as_f64(), q.milli()))
        };
        if let Some(prev) = samples.last()
            && at < prev.at
        {
            return Err(err(format!(
                "time goes backwards ({} is before the previous sample's {previous_time})",
                record[0].trim(),
            )));
        }
        if let Some(prev) = last_per_metric.get(&metric)
            && at <= *prev
        {
            return Err(err(format!(
                "times are not increasing for metric {metric:?} (two samples at {})",
                record[0].trim()
            )));
        }
        last_per_metric.insert(metric.clone(), at);
        samples.push(Sample { at, metric, value });
        previous_time = record[0].trim().to_string();
    }
    if samples.is_empty() {
        return Err(InputError::new(path, None, "no samples"));
    }
    Ok(Series { samples, wall_clock: time_form.is_some_and(TimeForm::wall_clock) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Series, String> {
        parse_series(Path::new("s.csv"), text, &["qps".to_string(), "cpu".to_string()])
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_both_time_forms() {
        let s = parse("timestamp,metric,value\n0,qps,10\n15,qps,12.5\n15,cpu,250m\n").unwrap();
        assert_eq!(s.samples.len(), 3);
        assert_eq!(s.samples[2].value.map(|(_, milli)| milli), Some(250));
        assert!(!s.wall_clock);
        let s = parse("timestamp,metric,value\n2024-05-01T00:00:00Z,qps,1\n2024-05-01T00:01:00Z,qps,2\n")
            .unwrap();
        assert!(s.wall_clock);
        assert_eq!(s.last() - s.first(), 60.0);
    }

    #[test]
    fn a_timestamp_number_is_read_by_its_size() {
        let at = |raw| parse_time(raw).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(at("15"), (15.0, TimeForm::Seconds));
        assert_eq!(at("1714521600"), (1714521600.0, TimeForm::UnixSeconds));
        assert_eq!(at("1714521600500"), (1714521600.5, TimeForm::UnixMilliseconds));
        let s = parse("timestamp,metric,value\n1714521600000,qps,1\n1714521660000,qps,2\n").unwrap();
        assert!(s.wall_clock);
        assert_eq!(s.last() - s.first(), 60.0);
        assert!(!parse("timestamp,metric,value\n0,qps,1\n60,qps,2\n").unwrap().wall_clock);
    }

    #[test]
    fn a_value_past_what_the_engine_reads_is_refused() {
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,1e400\n").unwrap_err(),
            "s.csv:2: value 1e400 is too large: the engine reads values up to 9223372036854775 (thousandths in 64 bits)"
        );
    }

    #[test]
    fn an_empty_value_is_an_outage_not_an_error() {
        let s = parse("timestamp,metric,value\n0,qps,1\n60,qps,\n").expect("parsed");
        assert_eq!(s.samples[1].value, None);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,1\n10,nope,2\n").unwrap_err(),
            "s.csv:3: unknown metric \"nope\"; the WPA's metrics are: qps, cpu"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,abc\n").unwrap_err(),
            "s.csv:2: value \"abc\" is not a number (leave it empty for an outage)"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,1\n0,qps,2\n").unwrap_err(),
            "s.csv:3: times are not increasing for metric \"qps\" (two samples at 0)"
        );
        assert_eq!(
            parse("timestamp,metric,value\n10,qps,1\n5,cpu,2\n").unwrap_err(),
            "s.csv:3: time goes backwards (5 is before the previous sample's 10)"
        );
        assert_eq!(
            parse("time,metric,value\n").unwrap_err(),
            "s.csv:1: the header must be `timestamp,metric,value`, found `time,metric,value`"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,-1\n").unwrap_err(),
            "s.csv:2: value -1 is negative; metric values cannot be negative"
        );
        assert_eq!(
            parse("timestamp,metric,value\nyesterday,qps,1\n").unwrap_err(),
            "s.csv:2: timestamp \"yesterday\" is not RFC 3339 (2024-05-01T12:00:00Z), Unix seconds or milliseconds, or seconds from 0"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps\n").unwrap_err(),
            "s.csv:2: expected 3 fields (timestamp,metric,value), found 2"
        );
        assert_eq!(parse("timestamp,metric,value\n").unwrap_err(), "s.csv: no samples");
    }
}
