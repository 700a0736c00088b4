//! The daemon's vocabulary: what a sandbox record holds, what clients send, what events say.
//! These types are the API's JSON and the database's rows alike, so there is one shape to learn.

use serde::{Deserialize, Serialize};
use spore_spec::{ExitStatus, SandboxSpec};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the operator wants for a sandbox; survives daemon restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    /// Keep it running (subject to its restart policy).
    Running,
    /// Leave it stopped.
    Stopped,
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Created, never started.
    Created,
    /// Its guest is running.
    Running,
    /// Waiting out the back-off before a restart.
    Restarting,
    /// Its guest ended (see `exit`).
    Exited,
}

impl State {
    /// The word used in filters and `spore ps`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Restarting => "restarting",
            State::Exited => "exited",
        }
    }
}

/// When to run a sandbox's guest again after it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero ending, up to `max` times (unbounded when `None`).
    OnFailure {
        /// Most restarts.
        max: Option<u32>,
    },
    /// After every ending, until stopped.
    Always,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;

    /// `no`, `always`, `on-failure` or `on-failure:N`, as docker writes them.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "no" => Ok(RestartPolicy::No),
            None if s == "always" => Ok(RestartPolicy::Always),
            None if s == "on-failure" => Ok(RestartPolicy::OnFailure { max: None }),
            Some(("on-failure", n)) => n
                .parse()
                .map(|n| RestartPolicy::OnFailure { max: Some(n) })
                .map_err(|_| format!("restart policy {s:?}: the count after on-failure: must be a number")),
            _ => Err(format!("restart policy {s:?}: write no, always, on-failure or on-failure:N")),
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max: Some(n) } => write!(f, "on-failure:{n}"),
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl RestartPolicy {
    /// Whether a guest that ended with `status`, after `restarts` restarts, runs again.
    pub fn should_restart(self, status: &ExitStatus, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max } => !status.success() && max.is_none_or(|m| restarts < m),
        }
    }

    /// Back-off before restart number `n` (0-based): 100 ms doubling to at most 30 s, as a
    /// crash-looping guest should cost little.
    pub fn backoff(n: u32) -> Duration {
        Duration::from_millis(100u64.saturating_mul(1 << n.min(9))).min(Duration::from_secs(30))
    }
}

/// A sandbox as stored and as returned by `inspect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// 32 hex digits; any unique prefix of at least 4 also names it.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free-form labels, for filtering (`app=web`).
    pub labels: BTreeMap<String, String>,
    /// What runs; `program` is always a digest of a stored program.
    pub spec: SandboxSpec,
    /// The manifest digest of the image it was created from, if any: pinned in the daemon's
    /// image store while a sandbox uses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// What the operator asked for.
    pub desired: Desired,
    /// What is happening.
    pub state: State,
    /// How the last run ended.
    pub exit: Option<ExitStatus>,
    /// Restarts made by the policy so far.
    pub restarts: u32,
    /// Unix milliseconds.
    pub created_at: u64,
    /// Unix milliseconds of the last start.
    pub started_at: Option<u64>,
    /// Unix milliseconds of the last ending.
    pub finished_at: Option<u64>,
}

/// A record's transitions: each event of a sandbox's life changes its record in one place,
/// so the supervisor's tasks and the restart after a crash agree on what a state means.
impl SandboxRecord {
    /// Its guest starts (at `now`, Unix ms): running, the last ending forgotten.
    pub fn started(&mut self, now: u64) {
        self.state = State::Running;
        self.started_at = Some(now);
        self.exit = None;
    }

    /// Its guest ended with `status` at `now`. Returns whether the restart policy starts it
    /// again (then it is restarting, one restart more); it is only while it is still desired
    /// running.
    pub fn ended(&mut self, status: ExitStatus, now: u64) -> bool {
        self.state = State::Exited;
        self.finished_at = Some(now);
        let again = self.desired == Desired::Running && self.restart.should_restart(&status, self.restarts);
        self.exit = Some(status);
        if again {
            self.state = State::Restarting;
            self.restarts += 1;
        }
        again
    }

    /// A stop came while it waited to restart: it stays exited, its last ending kept.
    pub fn restart_cancelled(&mut self) {
        self.state = State::Exited;
    }

    /// Its guest was killed at `now` (by request, or at the end of a stop's grace period).
    pub fn killed(&mut self, message: String, now: u64) {
        self.state = State::Exited;
        self.exit = Some(ExitStatus::Killed { message });
        self.finished_at = Some(now);
    }

    /// The daemon starts again after it stopped (or crashed) at an unknown instant: a run that
    /// was going on is over. Returns whether it is to run again (it is desired running).
    pub fn recovered_after_crash(&mut self, now: u64) -> bool {
        if matches!(self.state, State::Running | State::Restarting) {
            self.state = State::Exited;
            self.exit.get_or_insert(ExitStatus::Killed { message: "the daemon stopped while it was running".into() });
            self.finished_at.get_or_insert(now);
        }
        self.desired == Desired::Running
    }
}

/// `POST /v1/sandboxes`: one sandbox.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// Unique name; generated when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The spec; its program is a digest the daemon has (`PUT /v1/programs/...`) or an
    /// image reference (`{"image": "localhost:5000/app:v1"}`).
    pub spec: SandboxSpec,
    /// For an image: when to pull it (`missing`, the default; `always`; `never`).
    #[serde(default)]
    pub pull: spore_types::PullPolicy,
    /// Restart policy; the daemon's `[defaults] restart` (else `no`) when absent.
    #[serde(default)]
    pub restart: Option<RestartPolicy>,
    /// Start right away (default true).
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/sandboxes/batch`: many sandboxes from one template (fleet deploys).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The template; its `name`, when given, is a prefix: `NAME-0`, `NAME-1`, …
    pub template: CreateRequest,
    /// How many.
    pub count: u32,
}

/// What a create returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    /// The new sandbox's id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// What `POST /v1/programs/prune` deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PrunedPrograms {
    /// Each program deleted.
    pub deleted: Vec<PrunedProgram>,
    /// Their bytes together.
    pub bytes: u64,
}

/// One deleted program.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrunedProgram {
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub bytes: u64,
}

/// Live figures of one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// State.
    pub state: State,
    /// Linear memory committed by the current (or last) run, bytes.
    pub memory_bytes: u64,
    /// CPU time of the current (or last) run, milliseconds.
    pub cpu_ms: f64,
    /// Time since the current run started, milliseconds (0 when not running).
    pub uptime_ms: u64,
    /// Restarts made by the policy.
    pub restarts: u32,
    /// Log bytes dropped because the sandbox wrote faster than they could be stored.
    pub log_dropped_bytes: u64,
    /// Log lines dropped for the same reason (an empty line counts, though it has no bytes).
    pub log_dropped_lines: u64,
}

/// What happened to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Recorded.
    Created,
    /// Its guest started (also after a restart).
    Started,
    /// Its guest ended: the event carries how.
    Exited,
    /// Its restart policy started it again.
    Restarted,
    /// A stop was asked: no more restarts; the guest ends by itself or is killed after the
    /// grace period.
    Stopped,
    /// Its guest was killed (by request, or at the end of a stop's grace period).
    Killed,
    /// Removed, with its logs.
    Removed,
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            EventKind::Created => "created",
            EventKind::Started => "started",
            EventKind::Exited => "exited",
            EventKind::Restarted => "restarted",
            EventKind::Stopped => "stopped",
            EventKind::Killed => "killed",
            EventKind::Removed => "removed",
        })
    }
}

/// One thing that happened to a sandbox, as streamed by `GET /v1/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Unix milliseconds.
    pub time: u64,
    /// Sandbox id.
    pub id: String,
    /// Sandbox name.
    pub name: String,
    /// What happened.
    pub kind: EventKind,
    /// For `exited`: how.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

/// The daemon's `[defaults]`, parsed: applied to creates that leave these unset.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// Memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// CPU-time limit in milliseconds.
    pub cpu_time_ms: Option<u64>,
    /// Wall-clock limit in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Restart policy.
    pub restart: RestartPolicy,
}

impl Defaults {
    /// Fills what `req` leaves unset.
    pub fn apply(&self, req: &mut CreateRequest) {
        let l = &mut req.spec.limits;
        l.memory_bytes = l.memory_bytes.or(self.memory_bytes);
        l.cpu_time_ms = l.cpu_time_ms.or(self.cpu_time_ms);
        l.timeout_ms = l.timeout_ms.or(self.timeout_ms);
        req.restart.get_or_insert(self.restart);
    }
}

/// A sandbox name Spore does not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name {0:?}: use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit")]
pub struct NameError(pub String);

/// Checks a sandbox name a client chose: 1–128 letters, digits, `-`, `_` or `.`, starting with
/// a letter or digit (so it is a file name, a log prefix and a DNS label's worth of text).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    match ok {
        true => Ok(()),
        false => Err(NameError(name.to_owned())),
    }
}

/// The label that ties a deployed app's sandboxes together (`spore deploy` sets it; the
/// daemon keeps each app's key-value stores under it).
pub const APP_LABEL: &str = "spore.app";

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(restart: &str) -> SandboxRecord {
        SandboxRecord {
            id: "0".repeat(32),
            name: "app".into(),
            labels: BTreeMap::new(),
            spec: SandboxSpec::default(),
            image: None,
            restart: restart.parse().unwrap(),
            desired: Desired::Running,
            state: State::Created,
            exit: None,
            restarts: 0,
            created_at: 1,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn a_record_moves_through_its_life_as_its_events_say() {
        let fail = ExitStatus::Exited { code: 1 };
        let mut r = record("on-failure:1");
        r.started(10);
        assert_eq!((r.state, r.started_at, r.exit.clone()), (State::Running, Some(10), None));
        assert!(r.ended(fail.clone(), 20), "the policy restarts a failure once");
        assert_eq!((r.state, r.restarts, r.finished_at), (State::Restarting, 1, Some(20)));
        r.started(30);
        assert!(!r.ended(fail.clone(), 40), "but not twice");
        assert_eq!((r.state, r.exit.clone()), (State::Exited, Some(fail.clone())));

        // Stopped while waiting to restart: exited, the ending kept.
        let mut r = record("always");
        r.started(10);
        assert!(r.ended(ExitStatus::Exited { code: 0 }, 20));
        r.desired = Desired::Stopped;
        r.restart_cancelled();
        assert_eq!((r.state, r.exit.clone()), (State::Exited, Some(ExitStatus::Exited { code: 0 })));
        // Not desired running: an ending never restarts, whatever the policy.
        r.started(30);
        assert!(!r.ended(fail, 40));

        let mut r = record("always");
        r.started(10);
        r.killed("killed by request".into(), 15);
        assert_eq!(r.state, State::Exited);
        assert!(matches!(r.exit, Some(ExitStatus::Killed { .. })));
    }

    #[test]
    fn after_a_crash_a_run_that_was_going_on_is_over_and_what_is_desired_runs_again() {
        let mut r = record("no");
        r.started(10);
        assert!(r.recovered_after_crash(99), "desired running: it runs again");
        assert_eq!((r.state, r.finished_at), (State::Exited, Some(99)));
        assert!(matches!(&r.exit, Some(ExitStatus::Killed { message }) if message.contains("daemon stopped")));
        // An ending already recorded is kept; a stopped one stays stopped.
        let mut r = record("no");
        r.started(10);
        r.ended(ExitStatus::Exited { code: 0 }, 20);
        r.desired = Desired::Stopped;
        assert!(!r.recovered_after_crash(99));
        assert_eq!((r.exit.clone(), r.finished_at), (Some(ExitStatus::Exited { code: 0 }), Some(20)));
    }

    #[test]
    fn restart_policies_parse_print_and_decide() {
        for s in ["no", "always", "on-failure", "on-failure:3"] {
            assert_eq!(s.parse::<RestartPolicy>().unwrap().to_string(), s);
        }
        assert!("sometimes".parse::<RestartPolicy>().unwrap_err().contains("on-failure:N"));
        let fail = ExitStatus::Exited { code: 1 };
        let ok = ExitStatus::Exited { code: 0 };
        let p: RestartPolicy = "on-failure:2".parse().unwrap();
        assert!(p.should_restart(&fail, 1) && !p.should_restart(&fail, 2) && !p.should_restart(&ok, 0));
        assert!(RestartPolicy::Always.should_restart(&ok, 100));
        assert_eq!(RestartPolicy::backoff(0), Duration::from_millis(100));
        assert_eq!(RestartPolicy::backoff(20), Duration::from_secs(30));
    }
}
