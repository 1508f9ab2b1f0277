//! Go's `time.Duration` syntax (`10s`, `2500ms`, `1m0s`, `1h`), as the API server and users write it.

use std::time::Duration;

/// Parses a positive Go duration; `None` when malformed, zero, or too long to represent (a client-supplied
/// `?timeout=99999999999999999999999s` must not panic).
pub fn parse_duration(s: &str) -> Option<Duration> {
    parse_non_negative(s).filter(|d| !d.is_zero())
}

/// The value parser of duration flags: a positive Go duration.
pub fn arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a positive duration such as 15s, 500ms or 1m"))
}

/// The value parser of duration flags where `0s` (or `0`) means "off".
pub fn arg_or_off(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_non_negative(s).ok_or_else(|| format!("{s:?} is not a duration such as 5m, 30s or 0s (off)"))
}

/// The limit a flag parsed by [`arg_or_off`] sets: `None` when it is off.
pub fn limit(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

fn parse_non_negative(s: &str) -> Option<Duration> {
    let (mut total, mut number) = (0f64, String::new());
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('u' | 'µ', Some('s')) => {
                chars.next();
                1e-6
            }
            ('n', Some('s')) => {
                chars.next();
                1e-9
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * unit;
        number.clear();
    }
    if !number.is_empty() || s.trim().is_empty() {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("2500ms"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        for bad in ["", "10", "abc", "0s", "5x", "99999999999999999999999s"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn flags_accept_zero_only_as_off() {
        assert_eq!(arg_or_off("0s"), Ok(Duration::ZERO));
        assert_eq!(arg_or_off("0"), Ok(Duration::ZERO));
        assert_eq!(arg_or_off("5m"), Ok(Duration::from_secs(300)));
        assert!(arg_or_off("5").is_err());
        assert!(arg_or_off("").is_err());
        assert!(arg("0s").is_err());
        assert_eq!(arg("2s"), Ok(Duration::from_secs(2)));
    }
}
