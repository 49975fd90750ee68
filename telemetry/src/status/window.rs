//! The sliding window of samples that rates and quantiles are computed over: every
//! `/status.json` request records a [`Sample`] of the cumulative figures and gets the
//! [`Baseline`] to compare it with.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::families::{add, label_of, names, Buckets, Families};

/// How long the window of samples reaches back.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples closer together than this are not kept (many clients polling add nothing).
pub const MIN_SAMPLE_SPACING: Duration = Duration::from_millis(250);
/// An earlier sample is a baseline only if it is at least this old; otherwise rates are since start.
pub const MIN_BASELINE_AGE: Duration = Duration::from_millis(500);
/// Most samples kept (a bound even if the clock misbehaves).
pub const MAX_SAMPLES: usize = 64;

/// Cumulative figures at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub(super) requests: Option<f64>,
    pub(super) request_errors: Option<f64>,
    pub(super) request_duration: Option<Buckets>,
    pub(super) tools: Option<f64>,
    pub(super) tool_failures: Option<f64>,
    pub(super) tool_duration: Option<Buckets>,
    pub(super) searches: Option<f64>,
    pub(super) search_duration: Option<Buckets>,
    pub(super) exported: Option<f64>,
    pub(super) dropped: Option<f64>,
    pub(super) cpu_seconds: Option<f64>,
}

impl Sample {
    /// Reads the figures the window tracks out of `families`.
    pub fn read(families: Families<'_>) -> Sample {
        let server_errors = families.family(names::REQUESTS).map(|family| {
            family
                .get_metric()
                .iter()
                .filter(|m| label_of(m, "status_code").is_some_and(|code| code.starts_with('5')))
                .map(|m| m.get_counter().get_value())
                .fold(0.0, add)
        });
        Sample {
            requests: families.sum(names::REQUESTS, &[]),
            request_errors: server_errors,
            request_duration: families.histogram(names::REQUEST_DURATION),
            tools: families.sum(names::TOOLS, &[]),
            tool_failures: families.sum(names::TOOLS, &[("success", "false")]),
            tool_duration: families.histogram(names::TOOL_DURATION),
            searches: families.sum(names::SEARCHES, &[]),
            search_duration: families.histogram(names::SEARCH_DURATION),
            exported: families.sum(names::EXPORTED, &[]),
            dropped: families.sum(names::DROPPED, &[]),
            cpu_seconds: families.sum(names::CPU, &[]),
        }
    }
}

/// Recent samples, oldest first; shared by every client of `/status.json`.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<(Instant, Sample)>,
}

/// What a sample is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The earlier figures (`None`: the pipeline's start, when everything was zero).
    pub sample: Option<Sample>,
    /// Seconds between the baseline and now.
    pub seconds: f64,
}

impl Window {
    /// Records `sample` taken at `now` and returns the baseline to compare it with: the oldest
    /// sample within [`WINDOW`] if it is at least [`MIN_BASELINE_AGE`] old, else the start
    /// (`started`, `None` figures).
    pub fn observe(&mut self, now: Instant, started: Instant, sample: &Sample) -> Baseline {
        while self.samples.front().is_some_and(|(at, _)| now.saturating_duration_since(*at) > WINDOW) {
            self.samples.pop_front();
        }
        let baseline = match self.samples.front() {
            Some((at, earlier)) if now.saturating_duration_since(*at) >= MIN_BASELINE_AGE => {
                Baseline { sample: Some(earlier.clone()), seconds: now.saturating_duration_since(*at).as_secs_f64() }
            }
            _ => Baseline { sample: None, seconds: now.saturating_duration_since(started).as_secs_f64() },
        };
        let spaced = self.samples.back().is_none_or(|(at, _)| now.saturating_duration_since(*at) >= MIN_SAMPLE_SPACING);
        if spaced {
            if self.samples.len() >= MAX_SAMPLES {
                self.samples.pop_front();
            }
            self.samples.push_back((now, sample.clone()));
        }
        baseline
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}
