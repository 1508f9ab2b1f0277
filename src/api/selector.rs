//! Kubernetes label selectors: the string form (`app=web,tier in (a,b),!canary`) that a `/scale`
//! subresource reports, and the structured `LabelSelector` of a WPA metric.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector {input:?}: {problem}")]
pub struct SelectorError {
    pub input: String,
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed selector: all requirements must hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

fn unknown_operator(ls: &LabelSelector, operator: &str) -> SelectorError {
    SelectorError {
        input: format!("{ls:?}"),
        problem: format!("unknown operator {operator:?} (allowed: In, NotIn, Exists, DoesNotExist)"),
    }
}

impl Selector {
    /// Parses the string form used by `Scale.status.selector` and `?labelSelector=`.
    pub fn parse(input: &str) -> Result<Selector, SelectorError> {
        let err = |problem: &str| SelectorError { input: input.to_string(), problem: problem.to_string() };
        let mut requirements = Vec::new();
        for part in split_top_level(input).map_err(|p| err(&p))? {
            let part = part.trim();
            if part.is_empty() {
                if input.trim().is_empty() {
                    continue;
                }
                return Err(err("empty requirement"));
            }
            requirements.push(parse_requirement(part).map_err(|p| err(&p))?);
        }
        Ok(Selector { requirements })
    }

    /// The selector a structured `LabelSelector` stands for. Unknown operators are an error.
    pub fn from_label_selector(ls: &LabelSelector) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for (k, v) in ls.match_labels.iter().flatten() {
            requirements.push(Requirement { key: k.clone(), op: Op::Equals(v.clone()) });
        }
        for e in ls.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(unknown_operator(ls, other)),
            };
            requirements.push(Requirement { key: e.key.clone(), op });
        }
        Ok(Selector { requirements })
    }

    /// What [`Selector::from_label_selector`] would refuse, without building the selector (admission checks
    /// every metric's selector on every request).
    pub fn check(ls: &LabelSelector) -> Result<(), SelectorError> {
        match ls
            .match_expressions
            .iter()
            .flatten()
            .find(|e| !matches!(e.operator.as_str(), "In" | "NotIn" | "Exists" | "DoesNotExist"))
        {
            Some(e) => Err(unknown_operator(ls, &e.operator)),
            None => Ok(()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The `key=value` requirements, which a label index can answer without a scan.
    pub fn equalities(&self) -> impl Iterator<Item = (&str, &str)> {
        self.requirements.iter().filter_map(|r| match &r.op {
            Op::Equals(v) => Some((r.key.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Requirements sorted by key and set values sorted, as Go's `labels.Selector` prints them (a
    /// Deployment's `/scale` reports its selector in this form).
    pub fn sorted(mut self) -> Selector {
        for r in &mut self.requirements {
            if let Op::In(vs) | Op::NotIn(vs) = &mut r.op {
                vs.sort();
                vs.dedup();
            }
        }
        self.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = labels.get(&r.key);
            match &r.op {
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Equals(want) => v == Some(want),
                Op::NotEquals(want) => v != Some(want),
                Op::In(set) => v.is_some_and(|v| set.contains(v)),
                Op::NotIn(set) => v.is_none_or(|v| !set.contains(v)),
                Op::Gt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
                Op::Lt(n) => v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
            }
        })
    }
}

impl fmt::Display for Selector {
    /// The canonical string form (requirements in the order given).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match &r.op {
                Op::Exists => r.key.clone(),
                Op::DoesNotExist => format!("!{}", r.key),
                Op::Equals(v) => format!("{}={v}", r.key),
                Op::NotEquals(v) => format!("{}!={v}", r.key),
                Op::In(vs) => format!("{} in ({})", r.key, vs.join(",")),
                Op::NotIn(vs) => format!("{} notin ({})", r.key, vs.join(",")),
                Op::Gt(n) => format!("{}>{n}", r.key),
                Op::Lt(n) => format!("{}<{n}", r.key),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(input: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    parts.push(&input[start..]);
    Ok(parts)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    let check_key = |k: &str| -> Result<String, String> {
        let k = k.trim();
        if valid_key(k) { Ok(k.to_string()) } else { Err(format!("invalid label key {k:?}")) }
    };
    let check_value = |v: &str| -> Result<String, String> {
        let v = v.trim();
        if valid_value(v) { Ok(v.to_string()) } else { Err(format!("invalid label value {v:?}")) }
    };
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement { key: check_key(key)?, op: Op::DoesNotExist });
    }
    for (token, is_eq) in [("!=", false), ("==", true), ("=", true)] {
        if let Some((k, v)) = part.split_once(token) {
            let value = check_value(v)?;
            let op = if is_eq { Op::Equals(value) } else { Op::NotEquals(value) };
            return Ok(Requirement { key: check_key(k)?, op });
        }
    }
    for (token, gt) in [(">", true), ("<", false)] {
        if let Some((k, v)) = part.split_once(token) {
            let n: i64 = v.trim().parse().map_err(|_| format!("{v:?} is not an integer"))?;
            return Ok(Requirement { key: check_key(k)?, op: if gt { Op::Gt(n) } else { Op::Lt(n) } });
        }
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        for (kw, is_in) in [("notin", false), ("in", true)] {
            if let Some(set) = rest.strip_prefix(kw) {
                let set = set.trim();
                let inner = set
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| format!("expected a parenthesized set after {kw:?}"))?;
                let values = inner
                    .split(',')
                    .map(check_value)
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|v| !v.is_empty())
                    .collect::<Vec<_>>();
                if values.is_empty() {
                    return Err(format!("{kw:?} needs at least one value"));
                }
                let key = check_key(words[0])?;
                return Ok(Requirement { key, op: if is_in { Op::In(values) } else { Op::NotIn(values) } });
            }
        }
        return Err(format!("unexpected {rest:?}"));
    }
    Ok(Requirement { key: check_key(part)?, op: Op::Exists })
}

/// Go's `%v` of a `map[string]string`: `map[k1:v1 k2:v2]`, keys sorted. Upstream builds metric display
/// names and messages with it, e.g. `deadbeef{map[label:value]}`.
pub fn go_map_string(labels: Option<&BTreeMap<String, String>>) -> String {
    let mut out = String::with_capacity(32);
    push_go_map(&mut out, labels);
    out
}

/// [`go_map_string`] appended to `out` (a pass builds several names per metric).
pub(crate) fn push_go_map(out: &mut String, labels: Option<&BTreeMap<String, String>>) {
    out.push_str("map[");
    for (i, (k, v)) in labels.into_iter().flatten().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(k);
        out.push(':');
        out.push_str(v);
    }
    out.push(']');
}

/// The `?labelSelector=` form of a metric selector (for the external and resource metrics APIs).
pub fn label_selector_string(ls: Option<&LabelSelector>) -> Result<String, SelectorError> {
    match ls {
        None => Ok(String::new()),
        Some(ls) => Selector::from_label_selector(ls).map(|s| s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_and_matches_every_operator() {
        let s = Selector::parse("app=web,tier in (a, b),!canary,env!=prod,zone,rank>2,size<10,x==y").unwrap();
        let good = labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("env", "dev"),
            ("zone", "z"),
            ("rank", "3"),
            ("size", "9"),
            ("x", "y"),
        ]);
        assert!(s.matches(&good));
        let mut bad = good.clone();
        bad.insert("canary".into(), "1".into());
        assert!(!s.matches(&bad));
        let mut bad = good.clone();
        bad.insert("tier".into(), "c".into());
        assert!(!s.matches(&bad));
        assert!(Selector::parse("a notin (x)").unwrap().matches(&labels(&[])));
        assert!(!Selector::parse("a notin (x)").unwrap().matches(&labels(&[("a", "x")])));
    }

    #[test]
    fn sorted_form_is_gos_and_equalities_are_listed() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"tier": "web"},
            "matchExpressions": [{"key": "app", "operator": "In", "values": ["y", "x"]}]
        }))
        .unwrap();
        let s = Selector::from_label_selector(&ls).unwrap();
        assert_eq!(s.equalities().collect::<Vec<_>>(), vec![("tier", "web")]);
        assert_eq!(s.sorted().to_string(), "app in (x,y),tier=web");
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = Selector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[("any", "thing")])));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["a in x", "a in (", "a=b,,c", "=v", "a=b c", "a in ()", "a>x"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn structured_selectors_render_as_strings() {
        let ls: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}]
        }))
        .unwrap();
        assert_eq!(label_selector_string(Some(&ls)).unwrap(), "a=1,b=2,t in (x,y)");
        assert_eq!(go_map_string(ls.match_labels.as_ref()), "map[a:1 b:2]");
        assert_eq!(go_map_string(None), "map[]");
    }
}
