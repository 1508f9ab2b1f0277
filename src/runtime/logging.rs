//! Logs: JSON lines (the default) or human-readable text, on stderr.
//!
//! The JSON form puts the fields of the enclosing spans at the top level of each line, next to the event's
//! own, so every line written while reconciling a WPA carries `wpa_name`, `wpa_namespace` and the pairs of
//! its `wpa.datadoghq.com/logs-attributes` annotation (upstream adds them to its logger the same way). A span
//! field named `logs_attributes` holding a JSON object is spread into its pairs; tracing-subscriber's JSON
//! formatter can neither flatten span fields nor add fields whose names are only known at run time.

use std::{fmt::Write as _, io::Write as _};

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id, Record},
};
use tracing_subscriber::{EnvFilter, Layer, layer::Context, prelude::*, registry::LookupSpan};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

/// The span field whose JSON-object value is spread into top-level pairs.
pub(crate) const LOGS_ATTRIBUTES_FIELD: &str = "logs_attributes";

/// Keys a logs-attributes pair may not take over.
const RESERVED: [&str; 6] = ["timestamp", "level", "target", "message", "wpa_name", "wpa_namespace"];

/// Installs the global subscriber (once; later calls do nothing). `filter` (`RUST_LOG`'s syntax) filters,
/// default `info`.
pub(crate) fn init(format: LogFormat, filter: Option<&str>) {
    let filter = filter.and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    // Err only when a subscriber is already installed, which is fine.
    let _ = match format {
        LogFormat::Json => {
            tracing_subscriber::registry().with(JsonLines.with_filter(filter)).try_init().is_ok()
        }
        // Colour codes only for a terminal: a container log, a file or a pipe would keep them as text.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            // On a failed write the formatter reports it with `eprintln!`, to the same closed stderr, which
            // panics (`wpa serve 2>&1 | true` exited 101). A log line that cannot be written is dropped, as
            // the JSON lines are.
            .log_internal_errors(false)
            .try_init()
            .is_ok(),
    };
}

/// Fields collected from a span or an event.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, name: &str, value: Value) {
        if name == LOGS_ATTRIBUTES_FIELD {
            if let Value::String(s) = &value
                && let Ok(Value::Object(pairs)) = serde_json::from_str::<Value>(s)
            {
                for (k, v) in pairs {
                    if !RESERVED.contains(&k.as_str()) {
                        self.0.insert(k, v);
                    }
                }
            }
            return;
        }
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field.name(), Value::String(s));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field.name(), Value::String(value.to_string()));
    }
}

/// One JSON object per event, on stderr.
struct JsonLines;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(jiff::Timestamp::now().to_string()));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("target".into(), Value::String(event.metadata().target().to_string()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        let mut own = Fields::default();
        event.record(&mut own);
        line.extend(own.0);
        let mut out = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        out.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_attributes_are_spread_and_cannot_take_reserved_keys() {
        let mut f = Fields::default();
        f.put("wpa_name", Value::String("web".into()));
        f.put(LOGS_ATTRIBUTES_FIELD, Value::String(r#"{"team":"core","n":3,"wpa_name":"spoof"}"#.into()));
        assert_eq!(f.0.get("team"), Some(&Value::String("core".into())));
        assert_eq!(f.0.get("n"), Some(&Value::from(3)));
        assert_eq!(f.0.get("wpa_name"), Some(&Value::String("web".into())));
        assert!(!f.0.contains_key(LOGS_ATTRIBUTES_FIELD));
        // Not an object: ignored (the webhook refuses it; old objects may still carry one).
        let mut g = Fields::default();
        g.put(LOGS_ATTRIBUTES_FIELD, Value::String("[1,2]".into()));
        assert!(g.0.is_empty());
    }
}
