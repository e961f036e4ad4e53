//! User scripts run around PostgreSQL events, as Patroni runs them
//! (`postgresql.callbacks`, `postgresql.pre_promote`, `postgresql.before_stop`).
//!
//! - `on_start`, `on_stop`, `on_restart`, `on_reload`, `on_role_change` run in the background
//!   with the arguments `<action> <role> <scope>` appended to the configured command. They
//!   never overlap: a new one kills the previous one (its whole process group) and waits
//!   for it to be gone before starting. `on_reload` has its own slot, as in Patroni, so a
//!   reload does not kill a running role-change script.
//! - `pre_promote` runs synchronously after the leader key is taken and before PostgreSQL
//!   is promoted; a non-zero exit (or no exit within the time limit) aborts the promotion.
//! - `before_stop` runs synchronously before PostgreSQL is stopped; its result is logged only.
//!
//! Scripts run with a clean environment (PATH, a UTF-8 C locale), stdin closed, cwd `/`, as
//! the PostgreSQL OS user when the daemon is root, in their own process group, with a time
//! limit; their output is logged. This module decides nothing: the HA runner says when.

use crate::postgres::process::{clean_command, tail, ChildIds};
use futures::future::BoxFuture;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a background callback may run before it is killed. Patroni has no limit (a
/// hung script lives until the next callback kills it); ten minutes bounds a forgotten one.
pub const ASYNC_CALLBACK_LIMIT: Duration = Duration::from_secs(600);

/// Longest script output kept in a log line.
const OUTPUT_KEEP: usize = 2000;

/// The background callbacks, named as Patroni passes them (the first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallbackAction {
    /// PostgreSQL was started.
    OnStart,
    /// PostgreSQL was stopped.
    OnStop,
    /// PostgreSQL was restarted in the same role.
    OnRestart,
    /// PostgreSQL's configuration was reloaded.
    OnReload,
    /// PostgreSQL was promoted, or a former primary now runs as a replica.
    OnRoleChange,
}

impl CallbackAction {
    /// Patroni's name: `on_start`, `on_stop`, `on_restart`, `on_reload`, `on_role_change`.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnRestart => "on_restart",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

impl std::fmt::Display for CallbackAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role argument, as Patroni names PostgreSQL's role (a freshly promoted instance is
/// reported as `primary`, as Patroni maps `promoted` to `primary` for callbacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallbackRole {
    /// Read-write.
    Primary,
    /// Streaming or archive replica.
    Replica,
    /// Leader of a standby cluster.
    StandbyLeader,
    /// A former primary, stopped, not yet restarted as a replica.
    Demoted,
    /// No data directory yet.
    Uninitialized,
}

impl CallbackRole {
    /// Patroni's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
            CallbackRole::StandbyLeader => "standby_leader",
            CallbackRole::Demoted => "demoted",
            CallbackRole::Uninitialized => "uninitialized",
        }
    }

    /// From the role the REST status shows (`primary`, `master`, `replica`, ...).
    pub fn from_status(role: &str) -> CallbackRole {
        match role {
            "primary" | "master" | "promoted" => CallbackRole::Primary,
            "standby_leader" => CallbackRole::StandbyLeader,
            "demoted" => CallbackRole::Demoted,
            "uninitialized" => CallbackRole::Uninitialized,
            _ => CallbackRole::Replica,
        }
    }
}

impl std::fmt::Display for CallbackRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `pre_promote` did, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrePromote {
    /// No script is configured.
    NotConfigured,
    /// The script exited with 0.
    Succeeded,
}

/// Why a script did not succeed. Each names the hook and the program.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The configured command is empty or badly quoted.
    #[error("{hook}: the command {command:?} cannot be run: {why}")]
    BadCommand {
        /// The hook (`on_start`, `pre_promote`, ...).
        hook: &'static str,
        /// The configured text.
        command: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The program could not be started (missing, not executable).
    #[error("{hook}: cannot start `{program}`")]
    Spawn {
        /// The hook.
        hook: &'static str,
        /// The program.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{hook}: `{program}` exited with {status}")]
    Failed {
        /// The hook.
        hook: &'static str,
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
    },
    /// It ran past its time limit and was killed.
    #[error("{hook}: `{program}` did not finish within {limit:?} and was killed")]
    Timeout {
        /// The hook.
        hook: &'static str,
        /// The program.
        program: String,
        /// The limit.
        limit: Duration,
    },
    /// A newer callback replaced it and it was killed.
    #[error("{hook}: `{program}` was killed: a newer callback replaced it")]
    Replaced {
        /// The hook.
        hook: &'static str,
        /// The program.
        program: String,
    },
    /// The user to run scripts as could not be resolved.
    #[error("cannot resolve the user scripts run as")]
    User(#[source] crate::postgres::Error),
}

/// The narrow interface the HA runner calls; [`ScriptCallbacks`] runs the configured
/// commands, tests pass a recording fake.
pub trait Callbacks: Send + Sync {
    /// Starts the script configured for `action` in the background, with `<action> <role>
    /// <scope>`; returns at once. Does nothing when none is configured.
    fn fire(&self, action: CallbackAction, role: CallbackRole);

    /// Runs `pre_promote` to completion (at most `limit`). An error aborts the promotion.
    fn pre_promote(&self, limit: Duration) -> BoxFuture<'_, Result<PrePromote, CallbackError>>;

    /// Runs `before_stop` to completion (at most `limit`); the outcome is only logged.
    fn before_stop(&self, limit: Duration) -> BoxFuture<'_, ()>;

    /// Waits (at most `limit`) for background callbacks to finish, so the one fired at
    /// shutdown is not cut short by the daemon's exit.
    fn wait_idle(&self, limit: Duration) -> BoxFuture<'_, ()>;
}

/// The configured commands, already split into words.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackCommands {
    /// `callbacks.on_start`.
    pub on_start: Option<Vec<String>>,
    /// `callbacks.on_stop`.
    pub on_stop: Option<Vec<String>>,
    /// `callbacks.on_restart`.
    pub on_restart: Option<Vec<String>>,
    /// `callbacks.on_reload`.
    pub on_reload: Option<Vec<String>>,
    /// `callbacks.on_role_change`.
    pub on_role_change: Option<Vec<String>>,
    /// `pre_promote`.
    pub pre_promote: Option<Vec<String>>,
    /// `before_stop`.
    pub before_stop: Option<Vec<String>>,
}

impl CallbackCommands {
    /// From the `postgresql` section; a command that cannot be split is an error naming it.
    pub fn from_config(p: &crate::config::Postgresql) -> Result<Self, CallbackError> {
        let cb = p.callbacks.clone().unwrap_or_default();
        let argv = |hook: &'static str, c: &Option<crate::config::Command>| -> Result<_, CallbackError> {
            let Some(c) = c else { return Ok(None) };
            let text = match c {
                crate::config::Command::Shell(s) => s.clone(),
                crate::config::Command::Args(a) => a.join(" "),
            };
            let words = c.argv().ok_or(CallbackError::BadCommand {
                hook,
                command: text.clone(),
                why: "unbalanced quotes or a trailing backslash",
            })?;
            if words.is_empty() || words[0].is_empty() {
                return Err(CallbackError::BadCommand {
                    hook,
                    command: text,
                    why: "it is empty",
                });
            }
            Ok(Some(words))
        };
        Ok(CallbackCommands {
            on_start: argv("on_start", &cb.on_start)?,
            on_stop: argv("on_stop", &cb.on_stop)?,
            on_restart: argv("on_restart", &cb.on_restart)?,
            on_reload: argv("on_reload", &cb.on_reload)?,
            on_role_change: argv("on_role_change", &cb.on_role_change)?,
            pre_promote: argv("pre_promote", &p.pre_promote)?,
            before_stop: argv("before_stop", &p.before_stop)?,
        })
    }

    fn for_action(&self, a: CallbackAction) -> Option<&Vec<String>> {
        match a {
            CallbackAction::OnStart => self.on_start.as_ref(),
            CallbackAction::OnStop => self.on_stop.as_ref(),
            CallbackAction::OnRestart => self.on_restart.as_ref(),
            CallbackAction::OnReload => self.on_reload.as_ref(),
            CallbackAction::OnRoleChange => self.on_role_change.as_ref(),
        }
    }
}

/// One background script and the means to stop it.
struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Runs the configured scripts.
pub struct ScriptCallbacks {
    commands: CallbackCommands,
    scope: String,
    ids: ChildIds,
    /// on_start, on_stop, on_restart, on_role_change: one at a time.
    main: Arc<Mutex<Option<Running>>>,
    /// on_reload: one at a time, independently (Patroni's separate reload executor).
    reload: Arc<Mutex<Option<Running>>>,
}

impl ScriptCallbacks {
    /// Scripts for `scope`, run as `run_as` when the daemon is root (see
    /// `postgresql.run_as`), as the daemon's user otherwise.
    pub fn new(
        commands: CallbackCommands,
        scope: String,
        run_as: Option<&str>,
    ) -> Result<Self, CallbackError> {
        let ids = ChildIds::resolve(run_as).map_err(CallbackError::User)?;
        Ok(ScriptCallbacks {
            commands,
            scope,
            ids,
            main: Arc::default(),
            reload: Arc::default(),
        })
    }

    /// No scripts at all.
    pub fn none() -> Self {
        ScriptCallbacks {
            commands: CallbackCommands::default(),
            scope: String::new(),
            ids: ChildIds {
                uid: nix::unistd::Uid::effective(),
                gid: nix::unistd::Gid::effective(),
                switch: false,
            },
            main: Arc::default(),
            reload: Arc::default(),
        }
    }

    async fn run_sync(
        &self,
        hook: &'static str,
        argv: &[String],
        limit: Duration,
    ) -> Result<(), CallbackError> {
        let out = run_script(hook, argv, &self.ids, limit, &CancellationToken::new()).await;
        log_outcome(hook, &out);
        out.map(|_| ())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Callbacks for ScriptCallbacks {
    fn fire(&self, action: CallbackAction, role: CallbackRole) {
        let Some(cmd) = self.commands.for_action(action) else {
            return;
        };
        let mut argv = cmd.clone();
        argv.extend([
            action.as_str().to_string(),
            role.as_str().to_string(),
            self.scope.clone(),
        ]);
        let slot = if action == CallbackAction::OnReload {
            &self.reload
        } else {
            &self.main
        };
        let mut slot = lock(slot);
        let previous = slot.take();
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        let ids = self.ids;
        let hook = action.as_str();
        tracing::info!(callback = hook, role = %role, command = ?argv, "running callback");
        let task = tokio::spawn(async move {
            // Never overlapping: the previous script (and its children) goes first.
            if let Some(p) = previous {
                p.cancel.cancel();
                let _ = p.task.await;
            }
            let out = run_script(hook, &argv, &ids, ASYNC_CALLBACK_LIMIT, &token).await;
            log_outcome(hook, &out);
        });
        *slot = Some(Running { cancel, task });
    }

    fn pre_promote(&self, limit: Duration) -> BoxFuture<'_, Result<PrePromote, CallbackError>> {
        Box::pin(async move {
            match &self.commands.pre_promote {
                None => Ok(PrePromote::NotConfigured),
                Some(argv) => {
                    self.run_sync("pre_promote", argv, limit).await?;
                    Ok(PrePromote::Succeeded)
                }
            }
        })
    }

    fn before_stop(&self, limit: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(argv) = &self.commands.before_stop {
                let _ = self.run_sync("before_stop", argv, limit).await;
            }
        })
    }

    fn wait_idle(&self, limit: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let tasks: Vec<_> = [&self.main, &self.reload]
                .into_iter()
                .filter_map(|s| lock(s).take().map(|r| r.task))
                .collect();
            let _ = tokio::time::timeout(limit, futures::future::join_all(tasks)).await;
        })
    }
}

/// What a script printed.
#[derive(Debug, Default)]
struct Output {
    program: String,
    stdout: String,
    stderr: String,
}

fn log_outcome(hook: &'static str, out: &Result<Output, CallbackError>) {
    match out {
        Ok(o) => tracing::info!(
            callback = hook,
            program = %o.program,
            stdout = %o.stdout,
            stderr = %o.stderr,
            "callback finished"
        ),
        Err(e) => tracing::warn!(callback = hook, error = %crate::error::chain(e), "callback failed"),
    }
}

/// Runs `argv` in its own process group; kills the group on timeout or cancellation, and
/// after the script exits (Patroni kills a callback's leftover children too).
async fn run_script(
    hook: &'static str,
    argv: &[String],
    ids: &ChildIds,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Output, CallbackError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CallbackError::BadCommand {
            hook,
            command: String::new(),
            why: "it is empty",
        });
    };
    // Scripts see the daemon's PATH (they are the user's, not PostgreSQL's tools).
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let mut cmd = clean_command(program, &path, ids);
    // Their own process group, so the whole group (the script's children too) can be killed.
    cmd.args(args).process_group(0);
    let mut child = cmd.spawn().map_err(|source| CallbackError::Spawn {
        hook,
        program: program.clone(),
        source,
    })?;
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    let kill_group = || {
        if let Some(g) = pgid {
            // ESRCH (the group is already gone) is the normal case after a clean exit.
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g), nix::sys::signal::Signal::SIGKILL);
        }
    };
    let read = |p: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| async move {
        let mut buf = Vec::new();
        if let Some(mut p) = p {
            let _ = p.read_to_end(&mut buf).await;
        }
        tail(&String::from_utf8_lossy(&buf), OUTPUT_KEEP)
    };
    let stdout = tokio::spawn(read(child.stdout.take().map(|s| Box::new(s) as _)));
    let stderr = tokio::spawn(read(child.stderr.take().map(|s| Box::new(s) as _)));
    enum End {
        Exited(std::io::Result<ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let end = tokio::select! {
        r = child.wait() => End::Exited(r),
        _ = tokio::time::sleep(limit) => End::TimedOut,
        _ = cancel.cancelled() => End::Cancelled,
    };
    kill_group();
    if !matches!(end, End::Exited(_)) {
        // Reap it; SIGKILL cannot be ignored, so this is quick.
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    }
    // The pipes close once every process of the group is gone; a grandchild that moved to
    // another group could hold them open, hence the bound.
    let grab = |h: JoinHandle<String>| async move {
        tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    };
    let out = Output {
        program: program.clone(),
        stdout: grab(stdout).await,
        stderr: grab(stderr).await,
    };
    match end {
        End::Exited(Ok(st)) if st.success() => Ok(out),
        End::Exited(Ok(st)) => {
            if !out.stderr.is_empty() {
                tracing::warn!(callback = hook, program = %out.program, stderr = %out.stderr, "callback output");
            }
            Err(CallbackError::Failed {
                hook,
                program: program.clone(),
                status: st.to_string(),
            })
        }
        End::Exited(Err(source)) => Err(CallbackError::Spawn {
            hook,
            program: program.clone(),
            source,
        }),
        End::TimedOut => Err(CallbackError::Timeout {
            hook,
            program: program.clone(),
            limit,
        }),
        End::Cancelled => Err(CallbackError::Replaced {
            hook,
            program: program.clone(),
        }),
    }
}

/// A recording stand-in for unit tests of the runner.
#[cfg(test)]
pub mod fake {
    use super::*;

    /// Records every call as a string (`on_start primary`, `pre_promote`, `before_stop`).
    #[derive(Default)]
    pub struct RecordingCallbacks {
        /// Calls in order.
        pub calls: Mutex<Vec<String>>,
        /// When set, `pre_promote` fails.
        pub fail_pre_promote: std::sync::atomic::AtomicBool,
    }

    impl RecordingCallbacks {
        /// The calls so far.
        pub fn calls(&self) -> Vec<String> {
            lock(&self.calls).clone()
        }
    }

    impl Callbacks for RecordingCallbacks {
        fn fire(&self, action: CallbackAction, role: CallbackRole) {
            lock(&self.calls).push(format!("{action} {role}"));
        }
        fn pre_promote(&self, _limit: Duration) -> BoxFuture<'_, Result<PrePromote, CallbackError>> {
            Box::pin(async move {
                lock(&self.calls).push("pre_promote".into());
                if self.fail_pre_promote.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(CallbackError::Failed {
                        hook: "pre_promote",
                        program: "fake".into(),
                        status: "exit status: 1".into(),
                    });
                }
                Ok(PrePromote::Succeeded)
            })
        }
        fn before_stop(&self, _limit: Duration) -> BoxFuture<'_, ()> {
            Box::pin(async move { lock(&self.calls).push("before_stop".into()) })
        }
        fn wait_idle(&self, _limit: Duration) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into(), "sh".into()]
    }

    fn callbacks(c: CallbackCommands) -> ScriptCallbacks {
        // Tests may run as root: run the scripts as ourselves all the same.
        let mut s = ScriptCallbacks::none();
        s.commands = c;
        s.scope = "demo".into();
        s
    }

    async fn wait_file(path: &Path, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = std::fs::read_to_string(path).unwrap_or_default();
            if pred(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; file holds {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Patroni's argument order: the configured words, then action, role and scope.
    #[tokio::test]
    async fn a_callback_gets_action_role_and_scope_appended() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("argv");
        let cb = callbacks(CallbackCommands {
            on_role_change: Some(sh(&format!("echo \"$@\" >> {}", out.display()))),
            ..Default::default()
        });
        cb.fire(CallbackAction::OnRoleChange, CallbackRole::Primary);
        let s = wait_file(&out, |s| s.ends_with('\n')).await;
        assert_eq!(s, "on_role_change primary demo\n");
        // Unconfigured actions do nothing.
        cb.fire(CallbackAction::OnStart, CallbackRole::Replica);
        cb.wait_idle(Duration::from_secs(5)).await;
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "on_role_change primary demo\n"
        );
    }

    /// A new callback kills the previous one, children included, before it starts: they
    /// never overlap.
    #[tokio::test]
    async fn a_new_callback_kills_the_running_one_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = format!(
            "echo start-$1 >> {l}; sleep 30 & wait; echo end-$1 >> {l}",
            l = log.display()
        );
        let cb = callbacks(CallbackCommands {
            on_start: Some(sh(&script)),
            on_role_change: Some(sh(&format!("echo start-$1 >> {}", log.display()))),
            ..Default::default()
        });
        cb.fire(CallbackAction::OnStart, CallbackRole::Replica);
        wait_file(&log, |s| s.contains("start-on_start")).await;
        let t0 = std::time::Instant::now();
        cb.fire(CallbackAction::OnRoleChange, CallbackRole::Primary);
        let s = wait_file(&log, |s| s.contains("start-on_role_change")).await;
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the first one was killed, not awaited"
        );
        assert!(!s.contains("end-on_start"), "the killed script went on: {s}");
        cb.wait_idle(Duration::from_secs(5)).await;
    }

    /// pre_promote: exit 0 succeeds; non-zero, a missing program and a timeout fail with an
    /// error naming the hook and the program.
    #[tokio::test]
    async fn pre_promote_fails_on_non_zero_exit_missing_program_and_timeout() {
        let ok = callbacks(CallbackCommands {
            pre_promote: Some(sh("exit 0")),
            ..Default::default()
        });
        assert_eq!(
            ok.pre_promote(Duration::from_secs(5)).await.unwrap(),
            PrePromote::Succeeded
        );
        let none = callbacks(CallbackCommands::default());
        assert_eq!(
            none.pre_promote(Duration::from_secs(5)).await.unwrap(),
            PrePromote::NotConfigured
        );
        let bad = callbacks(CallbackCommands {
            pre_promote: Some(sh("echo fencing failed >&2; exit 3")),
            ..Default::default()
        });
        let e = bad.pre_promote(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(&e, CallbackError::Failed { status, .. } if status.contains('3')),
            "{e}"
        );
        let missing = callbacks(CallbackCommands {
            pre_promote: Some(vec!["/nonexistent/fence.sh".into()]),
            ..Default::default()
        });
        let e = missing.pre_promote(Duration::from_secs(5)).await.unwrap_err();
        let text = crate::error::chain(&e).to_string();
        assert!(
            text.contains("pre_promote") && text.contains("/nonexistent/fence.sh"),
            "{text}"
        );
        let slow = callbacks(CallbackCommands {
            pre_promote: Some(sh("sleep 30")),
            ..Default::default()
        });
        let t0 = std::time::Instant::now();
        let e = slow.pre_promote(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(e, CallbackError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    /// Commands come from the configuration split like a shell would; a badly quoted one is
    /// an error naming the callback.
    #[test]
    fn commands_are_split_from_the_configuration() {
        let p: crate::config::Postgresql = serde_json::from_value(serde_json::json!({
            "listen": "127.0.0.1:5432",
            "connect_address": "127.0.0.1:5432",
            "data_dir": "/data",
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "rep"}
            },
            "callbacks": {"on_role_change": "/bin/cb.sh 'a b'", "on_start": ["/bin/cb.sh", "x y"]},
            "pre_promote": "/bin/fence.sh --now"
        }))
        .unwrap();
        let c = CallbackCommands::from_config(&p).unwrap();
        assert_eq!(
            c.on_role_change,
            Some(vec!["/bin/cb.sh".to_string(), "a b".into()])
        );
        assert_eq!(c.on_start, Some(vec!["/bin/cb.sh".to_string(), "x y".into()]));
        assert_eq!(
            c.pre_promote,
            Some(vec!["/bin/fence.sh".to_string(), "--now".into()])
        );
        assert_eq!(c.before_stop, None);
        let mut bad = p.clone();
        bad.before_stop = Some(crate::config::Command::Shell("'open".into()));
        let e = CallbackCommands::from_config(&bad).unwrap_err();
        assert!(e.to_string().contains("before_stop"), "{e}");
    }
}
