//! Kubernetes `resource.Quantity`, with the semantics upstream WPA relies on.
//!
//! A quantity is held exactly as an integer number of nano-units (`10^-9`), which is what Kubernetes keeps
//! after parsing: finer precision is rounded away from zero to the next nano-unit, and magnitudes are capped
//! at `2^63 - 1` units. Every WPA decision uses [`Quantity::milli`] (Go's `MilliValue()`), which rounds away
//! from zero as well, so `0.0001` is 1 milli-unit.
//!
//! The original text is kept so that a typed round trip of a user's object loses nothing; messages use the
//! canonical form ([`Quantity::canonical`], Go's `String()`), e.g. `0.1` is `100m`.

use std::{borrow::Cow, fmt, fmt::Write as _, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const MAX_UNITS: i128 = i64::MAX as i128;

/// The number format a quantity was written in; it decides the canonical suffix family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `m`, `k`, `M`, ... or no suffix.
    DecimalSi,
    /// `Ki`, `Mi`, ...
    BinarySi,
    /// `e3`, `E-2`, ...
    DecimalExponent,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("quantity is empty")]
    Empty,
}

/// A parsed Kubernetes quantity.
#[derive(Clone, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
    /// What the user wrote, re-emitted on serialization.
    original: Original,
}

#[derive(Clone, Debug)]
enum Original {
    Text(String),
    /// Written as a bare JSON/YAML number (the CRD accepts int-or-string).
    Number(serde_json::Number),
}

impl PartialEq for Quantity {
    /// Semantic equality: `1` equals `1000m`.
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// `n / d` rounded away from zero, for `d > 0` (the remainder has `n`'s sign). In i64 when `n` fits:
/// 128-bit division is a library call, and every pass reads each watermark's milli-value.
fn div_away_from_zero(n: i128, d: i64) -> i128 {
    match i64::try_from(n) {
        Ok(n) => i128::from(n / d + (n % d).signum()),
        Err(_) => {
            let d = i128::from(d);
            n / d + (n % d).signum()
        }
    }
}

fn saturate_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl Quantity {
    /// Parses the full Kubernetes quantity grammar: `[+-]` digits with an optional fraction, then a decimal
    /// SI suffix (`n u m "" k M G T P E`), a binary suffix (`Ki Mi Gi Ti Pi Ei`) or an exponent (`e5`, `E-3`).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let (nanos, format) = parse_nanos(s)?;
        Ok(Quantity { nanos, format, original: Original::Text(s.to_string()) })
    }

    /// A quantity of `milli` thousandths, in decimal SI form (Go's `NewMilliQuantity(v, DecimalSI)`).
    pub fn from_milli(milli: i64) -> Self {
        let nanos = milli as i128 * 1_000_000;
        let mut q = Quantity { nanos, format: Format::DecimalSi, original: Original::Text(String::new()) };
        q.original = Original::Text(q.canonical());
        q
    }

    /// A whole-unit quantity in decimal SI form (Go's `NewQuantity(v, DecimalSI)`).
    pub fn from_units(units: i64) -> Self {
        Self::from_milli(units.saturating_mul(1000))
    }

    /// Go's `MilliValue()`: thousandths, rounded away from zero, saturated to `i64`.
    pub fn milli(&self) -> i64 {
        saturate_i64(div_away_from_zero(self.nanos, 1_000_000))
    }

    /// Go's `Value()`: whole units, rounded away from zero.
    pub fn value(&self) -> i64 {
        saturate_i64(div_away_from_zero(self.nanos, NANOS_PER_UNIT as i64))
    }

    /// The value as a float, for gauges and plots only (never for decisions).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANOS_PER_UNIT as f64
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The text as the user wrote it.
    pub fn original(&self) -> Cow<'_, str> {
        match &self.original {
            Original::Text(s) => Cow::Borrowed(s),
            Original::Number(n) => Cow::Owned(n.to_string()),
        }
    }

    /// Go's `Quantity.String()`: the canonical form, e.g. `0.1` → `100m`, `1536` (binary) → `1536`,
    /// `2048Ki` → `2Mi`, `1e3` → `1e3`.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySi
            && (self.nanos.abs() < 1024 * NANOS_PER_UNIT || self.nanos % NANOS_PER_UNIT != 0)
        {
            // Small or fractional binary values are shown in decimal, as Kubernetes does, to avoid rounding.
            format = Format::DecimalSi;
        }
        match format {
            Format::BinarySi => {
                let (mut amount, mut exp) = (self.nanos / NANOS_PER_UNIT, 0usize);
                while amount.abs() >= 1024 && amount % 1024 == 0 && exp < 6 {
                    amount /= 1024;
                    exp += 1;
                }
                const BIN: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
                format!("{amount}{}", BIN[exp])
            }
            Format::DecimalSi | Format::DecimalExponent => {
                let (mut mantissa, mut exp) = strip_tens(self.nanos);
                // Go's `%` keeps the dividend's sign; the exponent must become a multiple of 3.
                match exp % 3 {
                    1 | -2 => {
                        mantissa *= 10;
                        exp -= 1;
                    }
                    2 | -1 => {
                        mantissa *= 100;
                        exp -= 2;
                    }
                    _ => {}
                }
                let mut out = match i64::try_from(mantissa) {
                    // i128's Display costs several times i64's; status quantities always fit.
                    Ok(m) => m.to_string(),
                    Err(_) => mantissa.to_string(),
                };
                let suffix = match (format, exp) {
                    (_, 0) => Some(""),
                    (Format::DecimalSi, -9) => Some("n"),
                    (Format::DecimalSi, -6) => Some("u"),
                    (Format::DecimalSi, -3) => Some("m"),
                    (Format::DecimalSi, 3) => Some("k"),
                    (Format::DecimalSi, 6) => Some("M"),
                    (Format::DecimalSi, 9) => Some("G"),
                    (Format::DecimalSi, 12) => Some("T"),
                    (Format::DecimalSi, 15) => Some("P"),
                    (Format::DecimalSi, 18) => Some("E"),
                    // DecimalExponent, and DecimalSi beyond its suffixes.
                    _ => None,
                };
                match suffix {
                    Some(s) => out.push_str(s),
                    None => {
                        let _ = write!(out, "e{exp}");
                    }
                }
                out
            }
        }
    }
}

/// `nanos` without its trailing zeros, and the power of ten they were (starting from nano). In i64 when
/// it fits, because 128-bit division is a library call and this runs for every quantity of a status.
fn strip_tens(nanos: i128) -> (i128, i32) {
    let mut exp = -9i32;
    if let Ok(mut m) = i64::try_from(nanos) {
        while m.unsigned_abs() >= 10 && m % 10 == 0 {
            m /= 10;
            exp += 1;
        }
        return (i128::from(m), exp);
    }
    let mut m = nanos;
    while m.abs() >= 10 && m % 10 == 0 {
        m /= 10;
        exp += 1;
    }
    (m, exp)
}

fn parse_nanos(s: &str) -> Result<(i128, Format), QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        negative = bytes[0] == b'-';
        i = 1;
    }
    let int_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &s[int_start..i];
    let mut frac_digits = "";
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &s[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(QuantityError::Format);
    }
    let suffix = &s[i..];
    let (format, dec_exp, bin_exp): (Format, i64, u32) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "n" => (Format::DecimalSi, -9, 0),
        "u" => (Format::DecimalSi, -6, 0),
        "m" => (Format::DecimalSi, -3, 0),
        "k" => (Format::DecimalSi, 3, 0),
        "M" => (Format::DecimalSi, 6, 0),
        "G" => (Format::DecimalSi, 9, 0),
        "T" => (Format::DecimalSi, 12, 0),
        "P" => (Format::DecimalSi, 15, 0),
        "E" => (Format::DecimalSi, 18, 0),
        "Ki" => (Format::BinarySi, 0, 10),
        "Mi" => (Format::BinarySi, 0, 20),
        "Gi" => (Format::BinarySi, 0, 30),
        "Ti" => (Format::BinarySi, 0, 40),
        "Pi" => (Format::BinarySi, 0, 50),
        "Ei" => (Format::BinarySi, 0, 60),
        _ if suffix.starts_with(['e', 'E']) => {
            let exp = &suffix[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            // Anything past ±60 is far outside the representable range; clamp instead of overflowing.
            let e: i64 = exp.parse::<i64>().unwrap_or(if exp.starts_with('-') { -1000 } else { 1000 });
            (Format::DecimalExponent, e.clamp(-1000, 1000), 0)
        }
        _ => return Err(QuantityError::Suffix),
    };

    // value = digits × 2^bin_exp × 10^(dec_exp − len(frac)), in nano-units, rounded away from zero and
    // capped at 2^63−1 units. Digits past the 30th cannot change a representable result except through
    // rounding, so they only leave a "non-zero remainder" mark.
    // The integer and fraction digits as one number; past 30 significant digits, only whether a dropped
    // digit was non-zero matters (for rounding away from zero), and each dropped digit scales by 10.
    let mut scale10 = dec_exp - frac_digits.len() as i64 + 9;
    let (mut d, mut significant, mut sticky) = (0i128, 0usize, false);
    for b in int_digits.bytes().chain(frac_digits.bytes()) {
        if significant == 0 && b == b'0' {
            continue;
        }
        if significant < 30 {
            d = d * 10 + i128::from(b - b'0');
            significant += 1;
        } else {
            sticky |= b != b'0';
            scale10 += 1;
        }
    }
    let cap = MAX_UNITS * NANOS_PER_UNIT;
    let magnitude = if d == 0 {
        0
    } else {
        match d.checked_mul(1i128 << bin_exp) {
            None => cap,
            Some(d2) if scale10 >= 0 => {
                if scale10 > 38 {
                    cap
                } else {
                    d2.checked_mul(10i128.pow(scale10 as u32)).map_or(cap, |v| v.min(cap))
                }
            }
            Some(d2) => {
                let div = -scale10;
                if div > 38 {
                    1
                } else {
                    let p = 10i128.pow(div as u32);
                    (d2 / p + i128::from(d2 % p != 0 || sticky)).min(cap)
                }
            }
        }
    };
    let nanos = if negative { -magnitude } else { magnitude };
    Ok((nanos, format))
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.original {
            Original::Text(s) => serializer.serialize_str(s),
            Original::Number(n) => n.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl Visitor {
            fn number<E: de::Error>(n: serde_json::Number) -> Result<Quantity, E> {
                let text = n.to_string();
                let (nanos, format) =
                    parse_nanos(&text).map_err(|e| E::custom(format!("invalid quantity {text}: {e}")))?;
                Ok(Quantity { nanos, format, original: Original::Number(n) })
            }
        }
        impl de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (a string such as \"100m\" or a number)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Quantity, E> {
                Quantity::parse(s).map_err(|e| E::custom(format!("invalid quantity {s:?}: {e}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Self::number(v.into())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Self::number(v.into())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                let n = serde_json::Number::from_f64(v)
                    .ok_or_else(|| E::custom(format!("invalid quantity {v}")))?;
                Self::number(n)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The regular expression the Kubernetes API server checks quantities against (as controller-gen emits it).
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": true,
        })
    }
}

/// The value parser of byte-count flags: a whole, positive number of bytes, written plainly (`33554432`) or
/// as a Kubernetes quantity (`32Mi`, `1Gi`, `500k`), as a container's memory limit is.
pub fn bytes_arg(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a number of bytes such as 33554432, 32Mi or 1Gi");
    let q = Quantity::parse(s.trim()).map_err(|_| bad())?;
    // A quantity past i64::MAX units is saturated by the parser (as Go's is): no byte count, refused.
    if q.nanos <= 0 || q.nanos % NANOS_PER_UNIT != 0 || q.nanos >= MAX_UNITS * NANOS_PER_UNIT {
        return Err(bad());
    }
    usize::try_from(q.nanos / NANOS_PER_UNIT).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_flags_take_plain_numbers_and_binary_or_decimal_suffixes() {
        assert_eq!(bytes_arg("33554432"), Ok(33_554_432));
        assert_eq!(bytes_arg("32Mi"), Ok(33_554_432));
        assert_eq!(bytes_arg("1Gi"), Ok(1 << 30));
        assert_eq!(bytes_arg("500k"), Ok(500_000));
    }

    #[test]
    fn byte_flags_refuse_fractions_zero_negatives_and_units_of_other_tools() {
        for bad in ["0", "-1", "1.5", "100m", "32MiB", "32 MB", "", "1e400"] {
            let e = bytes_arg(bad).expect_err(bad);
            assert!(e.contains("33554432, 32Mi or 1Gi"), "{bad}: {e}");
        }
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn milli_values_round_away_from_zero() {
        assert_eq!(q("0.0001").milli(), 1);
        assert_eq!(q("-0.0001").milli(), -1);
        assert_eq!(q("100m").milli(), 100);
        assert_eq!(q("0.1").milli(), 100);
        assert_eq!(q("120001m").milli(), 120001);
        assert_eq!(q("1.5Ki").milli(), 1_536_000);
        assert_eq!(q("1e3").milli(), 1_000_000);
        assert_eq!(q("1E-3").milli(), 1);
        assert_eq!(q("1n").milli(), 1);
        assert_eq!(q("999u").milli(), 1);
        assert_eq!(q("1001u").milli(), 2);
        assert_eq!(q("2k").milli(), 2_000_000);
        assert_eq!(q("+5").milli(), 5000);
        assert_eq!(q(".5").milli(), 500);
        assert_eq!(q("5.").milli(), 5000);
        assert_eq!(q("0.4").value(), 1);
        assert_eq!(q("-0.4").value(), -1);
        assert_eq!(q("20").value(), 20);
    }

    #[test]
    fn milli_values_round_the_same_on_both_sides_of_64_bit_nanos() {
        // i64::MAX nano-units, then one more: the first is divided in 64 bits, the second in 128.
        assert_eq!(q("9223372036.854775807").milli(), 9_223_372_036_855);
        assert_eq!(q("9223372036.854775808").milli(), 9_223_372_036_855);
        assert_eq!(q("-9223372036.854775808").milli(), -9_223_372_036_855);
        assert_eq!(q("-9223372036.854775809").milli(), -9_223_372_036_855);
        assert_eq!(q("10000000000.0001").milli(), 10_000_000_000_001);
        assert_eq!(q("-10000000000.0001").milli(), -10_000_000_000_001);
        assert_eq!(q("10000000000.0001").value(), 10_000_000_001);
        assert_eq!(q("10000000000").value(), 10_000_000_000);
    }

    #[test]
    fn precision_below_nano_rounds_up_and_magnitude_is_capped() {
        assert_eq!(q("1e-12").canonical(), "1e-9");
        assert_eq!(q("0.0000000001").canonical(), "1n");
        assert_eq!(q("1e30").value(), i64::MAX);
        assert_eq!(q("-1e30").value(), -i64::MAX);
        assert_eq!(q("1e-3000").canonical(), "1e-9");
        assert_eq!(q("0.0000000001Ki").canonical(), "103n");
        assert_eq!(q("0e5").canonical(), "0");
    }

    #[test]
    fn canonical_strings_match_kubernetes() {
        for (input, want) in [
            ("0", "0"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("1.5", "1500m"),
            ("50", "50"),
            ("5", "5"),
            ("-1", "-1"),
            ("134", "134"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("0.5", "500m"),
            ("1536", "1536"),
            ("1.5Ki", "1536"),
            ("2048Ki", "2Mi"),
            ("1024", "1024"),
            ("1Ki", "1Ki"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("1E-3", "1e-3"),
            ("12e6", "12e6"),
            ("80m", "80m"),
            ("4799m", "4799m"),
            ("+1.0", "1"),
            ("1000000000000000000", "1E"),
            ("123456789n", "123456789n"),
        ] {
            assert_eq!(q(input).canonical(), want, "canonical form of {input}");
        }
    }

    #[test]
    fn from_milli_is_decimal_si() {
        assert_eq!(Quantity::from_milli(80_000).canonical(), "80");
        assert_eq!(Quantity::from_milli(4799).canonical(), "4799m");
        assert_eq!(Quantity::from_milli(270_000).canonical(), "270");
        assert_eq!(Quantity::from_milli(100).to_string(), "100m");
        assert_eq!(Quantity::from_units(50).to_string(), "50");
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["", ".", "+", "abc", "1x", "1Kb", "1e", "1e+", "1.2.3", " 1", "1 ", "--1", "1ki", "e3"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn serde_keeps_the_written_form() {
        let v: Quantity = serde_json::from_str("50").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "50");
        let v: Quantity = serde_json::from_str("\"0.1\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"0.1\"");
        assert_eq!(v.canonical(), "100m");
        assert!(serde_json::from_str::<Quantity>("\"1x\"").is_err());
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert_eq!(q("1"), q("1000m"));
    }
}
