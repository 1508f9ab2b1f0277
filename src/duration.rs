//! Go's `time.Duration` syntax (`10s`, `2500ms`, `1m0s`, `1h`), as the API server and users write it.

use std::time::Duration;

/// Parses a positive Go duration; `None` when malformed or zero.
pub fn parse_duration(s: &str) -> Option<Duration> {
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
    (number.is_empty() && total > 0.0 && total.is_finite()).then(|| Duration::from_secs_f64(total))
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
        for bad in ["", "10", "abc", "0s", "5x"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
