//! `--metric-max-age` of the commands that judge a live WPA's metrics as `wpa serve` does (`explain`,
//! `status`): one flag, read from serve's variable, so a shell set up for serve sees the same verdicts.

use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(crate) struct MetricAge {
    /// Same as `wpa serve --metric-max-age` ("0s": no limit), and read from the same variable, so a
    /// shell that sets it for serve sees the same verdicts here.
    #[arg(long, env = "WPA_METRIC_MAX_AGE", default_value = "5m", value_parser = crate::api::duration::arg_or_off)]
    pub(crate) metric_max_age: Duration,
}

impl MetricAge {
    /// The limit on a sample's age (`None`: no limit).
    pub(crate) fn limit(&self) -> Option<Duration> {
        crate::api::duration::limit(self.metric_max_age)
    }
}
