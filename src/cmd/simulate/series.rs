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
    pub(crate) fn new(file: &Path, line: Option<u64>, problem: impl Into<String>) -> Self {
        InputError { file: file.display().to_string(), line, problem: problem.into() }
    }
}

/// One sample.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// Seconds since the Unix epoch (fractional allowed).
    pub(crate) at: f64,
    pub(crate) metric: String,
    pub(crate) value: f64,
    /// The exact value, as the metrics API would serve it (milli-units).
    pub(crate) milli: i64,
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

fn parse_time(raw: &str) -> Result<(f64, bool), String> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<f64>()
        && secs.is_finite()
    {
        return Ok((secs, false));
    }
    raw.parse::<Timestamp>().map(|t| (t.as_millisecond() as f64 / 1000.0, true)).map_err(|_| {
        format!("timestamp {raw:?} is neither RFC 3339 (2024-05-01T12:00:00Z) nor a number of seconds")
    })
}

/// Reads and checks a series. `metrics` are the names the WPA knows (metricName or resource name).
pub(crate) fn read_series(path: &Path, metrics: &[String]) -> Result<Series, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::new(path, None, format!("cannot read: {e}")))?;
    parse_series(path, &text, metrics)
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
    let mut wall_clock = None;
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
        let (at, is_wall) = parse_time(&record[0]).map_err(err)?;
        if *wall_clock.get_or_insert(is_wall) != is_wall {
            return Err(err("mixes RFC 3339 timestamps and seconds; use one form for the whole file".into()));
        }
        let metric = record[1].to_string();
        if !metrics.contains(&metric) {
            return Err(err(format!(
                "unknown metric {metric:?}; the WPA's metrics are: {}",
                metrics.join(", ")
            )));
        }
        let raw = &record[2];
        let q = Quantity::parse(raw).map_err(|_| err(format!("value {raw:?} is not a number")))?;
        if q.milli() < 0 {
            return Err(err(format!("value {raw} is negative; metric values cannot be negative")));
        }
        if let Some(prev) = samples.last()
            && at < prev.at
        {
            return Err(err(format!(
                "time goes backwards ({} is before the previous sample's {})",
                record[0].trim(),
                fmt_time(prev.at, is_wall)
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
        samples.push(Sample { at, metric, value: q.as_f64(), milli: q.milli() });
    }
    if samples.is_empty() {
        return Err(InputError::new(path, None, "no samples"));
    }
    Ok(Series { samples, wall_clock: wall_clock.unwrap_or(false) })
}

fn fmt_time(at: f64, wall: bool) -> String {
    if wall {
        Timestamp::from_millisecond((at * 1000.0) as i64)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| at.to_string())
    } else {
        at.to_string()
    }
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
        assert_eq!(s.samples[2].milli, 250);
        assert!(!s.wall_clock);
        let s = parse("timestamp,metric,value\n2024-05-01T00:00:00Z,qps,1\n2024-05-01T00:01:00Z,qps,2\n")
            .unwrap();
        assert!(s.wall_clock);
        assert_eq!(s.last() - s.first(), 60.0);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,1\n10,nope,2\n").unwrap_err(),
            "s.csv:3: unknown metric \"nope\"; the WPA's metrics are: qps, cpu"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps,abc\n").unwrap_err(),
            "s.csv:2: value \"abc\" is not a number"
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
            "s.csv:2: timestamp \"yesterday\" is neither RFC 3339 (2024-05-01T12:00:00Z) nor a number of seconds"
        );
        assert_eq!(
            parse("timestamp,metric,value\n0,qps\n").unwrap_err(),
            "s.csv:2: expected 3 fields (timestamp,metric,value), found 2"
        );
        assert_eq!(parse("timestamp,metric,value\n").unwrap_err(), "s.csv: no samples");
    }
}
