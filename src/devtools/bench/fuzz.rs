//! `wpa bench fuzz`: a million (by default) mutated AdmissionReviews through the webhook's router, in
//! process: structural mutations of valid reviews (values of the wrong type, removed and duplicated keys,
//! huge and deep values, extreme numbers) and byte-level ones (flips, truncation, garbage). Every answer must
//! be 200, 400 or 413; a 200 must be an AdmissionReview echoing the request's uid; nothing may panic. A
//! benchmark-style command, not a test: it reports counts, the rate and the slowest request.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Rng, admission::workloads};
use crate::{
    runtime::registry::Registry,
    state::TargetIndex,
    webhook::{self, WebhookState},
};

fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(i64::MAX),
        4 => json!(1e308),
        5 => json!("1e400"),
        6 => json!("NaN"),
        7 => json!(""),
        8 => json!("x".repeat(rng.below(100_000))),
        9 => json!([]),
        10 => json!({}),
        11 => {
            let mut v = json!(0);
            for _ in 0..rng.below(200) {
                v = json!([v]);
            }
            v
        }
        12 => json!("\u{0}\u{ffff}\u{1F600}"),
        _ => json!(rng.next()),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The keys that lead to what the rules read; the mutator walks down them on every other step, so most
/// mutations land in the object rather than in the review's envelope (which fails fast with a 400).
const TOWARDS_THE_RULES: [&str; 8] =
    ["request", "object", "spec", "metadata", "metrics", "template", "external", "annotations"];

/// Changes one place of a JSON value.
fn mutate(v: &mut Value, rng: &mut Rng, depth: usize) {
    match v {
        Value::Object(map) if !map.is_empty() && depth < 12 => {
            let towards = TOWARDS_THE_RULES.iter().find(|k| map.contains_key(**k));
            if let (Some(k), 0) = (towards, rng.below(2))
                && let Some(child) = map.get_mut(*k)
            {
                return mutate(child, rng, depth + 1);
            }
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = keys[rng.below(keys.len())].clone();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(key, odd_value(rng));
                }
                2 => {
                    map.insert(format!("{key}{}", rng.below(3)), odd_value(rng));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate(child, rng, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && depth < 12 => {
            let i = rng.below(items.len());
            if rng.below(4) == 0 {
                items.push(odd_value(rng));
            } else {
                mutate(&mut items[i], rng, depth + 1);
            }
        }
        other if rng.below(3) > 0 => *other = same_type_odd_value(other, rng),
        other => *other = odd_value(rng),
    }
}

/// An extreme value of the same JSON type, which gets past decoding to the rules: boundary numbers,
/// quantities and durations that do not parse or overflow, keys of another shape.
fn same_type_odd_value(v: &Value, rng: &mut Rng) -> Value {
    const STRINGS: [&str; 14] = [
        "",
        "0",
        "-1",
        "1e400",
        "NaN",
        "-0",
        "0.5",
        "1Ki",
        "9223372036854775808",
        "1m",
        " 1",
        "a=b",
        "{",
        "\u{0}",
    ];
    match v {
        Value::String(_) if rng.below(8) == 0 => json!("x".repeat(rng.below(20_000))),
        Value::String(_) => json!(STRINGS[rng.below(STRINGS.len())]),
        Value::Number(_) => match rng.below(7) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(i64::MAX),
            3 => json!(i64::MIN),
            4 => json!(u64::MAX),
            5 => json!(1e308),
            _ => json!(0.5),
        },
        Value::Bool(b) => json!(!b),
        _ => odd_value(rng),
    }
}

fn bytes_of(seed: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.clone();
    for _ in 0..1 + rng.below(4) {
        mutate(&mut v, rng, 0);
    }
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    match rng.below(10) {
        // Byte-level damage on a tenth: a flip, a cut, or a duplicated key spliced in.
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 if bytes.len() > 2 => {
            let dup = br#""request":{"uid":"dup"},"#;
            bytes.splice(1..1, dup.iter().copied());
        }
        _ => {}
    }
    bytes
}

/// Runs `reviews` requests; the report, or the first broken invariant.
pub(crate) async fn run(reviews: usize, seed: u64) -> Result<String, String> {
    let state = WebhookState::new(TargetIndex::new(), &Registry::new(), Default::default());
    let app = webhook::router(state);
    let seeds: Vec<(&str, Value)> = workloads()
        .into_iter()
        .map(|(_, path, body)| (path, serde_json::from_slice(&body).unwrap_or(Value::Null)))
        .collect();
    let mut rng = Rng(seed);
    let mut codes: BTreeMap<u16, usize> = BTreeMap::new();
    let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut echoed, mut slowest) = (0usize, Duration::ZERO);
    let started = Instant::now();
    for n in 0..reviews {
        let (path, seed_review) = &seeds[rng.below(seeds.len())];
        let body = Bytes::from(bytes_of(seed_review, &mut rng));
        let sent_uid = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/request/uid").and_then(Value::as_str).map(String::from));
        let request = http::Request::post(format!("{path}?timeout=10s"))
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .map_err(|e| e.to_string())?;
        let one = Instant::now();
        // A panic in a handler would end this task, not the run: it is caught and reported.
        let app = app.clone();
        let answer = tokio::spawn(async move {
            let response = app.oneshot(request).await.map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|e| format!("request {n}: the handler panicked: {e}"))??;
        slowest = slowest.max(one.elapsed());
        let body_sent = body;
        let (status, body) = answer;
        *codes.entry(status).or_default() += 1;
        match status {
            200 => {
                let review: Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("request {n}: a 200 that is not JSON: {e}"))?;
                if review["kind"] != "AdmissionReview" {
                    return Err(format!("request {n}: a 200 that is not an AdmissionReview: {review}"));
                }
                let allowed = review.pointer("/response/allowed").and_then(Value::as_bool);
                let patched = review.pointer("/response/patch").is_some();
                *verdicts
                    .entry(match (allowed, patched) {
                        (Some(true), true) => "allowed with a patch",
                        (Some(true), false) => "allowed",
                        (Some(false), _) => "denied",
                        (None, _) => {
                            return Err(format!("request {n}: a 200 without response.allowed: {review}"));
                        }
                    })
                    .or_default() += 1;
                if let Some(uid) = &sent_uid {
                    if review.pointer("/response/uid").and_then(Value::as_str) != Some(uid.as_str()) {
                        return Err(format!("request {n}: uid {uid:?} not echoed: {review}"));
                    }
                    echoed += 1;
                } else {
                    // The body did not parse as a serde_json Value (e.g. nesting past its depth limit in a
                    // field the webhook skips): the echoed uid must still be one the body sent.
                    let echoed_uid = review.pointer("/response/uid").and_then(Value::as_str).unwrap_or("");
                    let needle = format!("\"uid\":{}", Value::from(echoed_uid));
                    if !contains(&body_sent, needle.as_bytes()) {
                        return Err(format!("request {n}: uid {echoed_uid:?} was not in the request"));
                    }
                    echoed += 1;
                }
            }
            400 | 413 => {}
            other => return Err(format!("request {n}: status {other}")),
        }
    }
    let elapsed = started.elapsed();
    let mut out = String::new();
    let _ =
        writeln!(out, "wpa bench fuzz: {reviews} mutated AdmissionReviews through the webhook (seed {seed})");
    let _ = writeln!(out, "  answers by status: {codes:?}; no panic, no other status");
    let _ = writeln!(out, "  the answers of status 200: {verdicts:?}");
    let _ = writeln!(out, "  the request's uid echoed in all {echoed} answers of status 200");
    let _ = writeln!(
        out,
        "  {:.0} requests/s on one task; slowest request {:.1} ms; {:.1} s in all",
        reviews as f64 / elapsed.as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        elapsed.as_secs_f64()
    );
    Ok(out)
}
