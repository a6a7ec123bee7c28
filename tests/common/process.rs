//! Child processes with hard deadlines: a guard that kills on drop, a bounded run-to-completion,
//! and POSIX signals sent through `kill(1)` (the tests have no libc binding of their own).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running child that is killed and reaped when the guard drops, so no test leaks a process.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    /// Where the child's stderr goes, for failure messages.
    pub stderr_path: Option<PathBuf>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed, stdout discarded and stderr captured to `stderr_path`.
    pub fn spawn(name: &str, cmd: &mut Command, stderr_path: PathBuf) -> ChildGuard {
        ChildGuard::spawn_with(name, cmd, Stdio::null(), Stdio::null(), stderr_path)
    }

    /// Like [`ChildGuard::spawn`] with the given stdin and stdout (pipelines: pass
    /// `Stdio::piped()` and hand [`ChildGuard::take_stdout`] to the next process).
    pub fn spawn_with(
        name: &str,
        cmd: &mut Command,
        stdin: Stdio,
        stdout: Stdio,
        stderr_path: PathBuf,
    ) -> ChildGuard {
        let stderr = std::fs::File::create(&stderr_path).expect("create stderr capture file");
        let child = cmd
            .stdin(stdin)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            stderr_path: Some(stderr_path),
        }
    }

    /// Spawns `cmd` with its stderr piped into a `cat` child that copies it to `stderr_path`: a
    /// log reader the test can stop (`SIGSTOP`) and resume. Returns the child and the reader;
    /// the child's [`ChildGuard::stderr`] reads what the reader copied so far.
    pub fn spawn_with_log_reader(
        name: &str,
        cmd: &mut Command,
        stderr_path: PathBuf,
    ) -> (ChildGuard, ChildGuard) {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        let pipe = child.stderr.take().expect("stderr piped");
        let out = std::fs::File::create(&stderr_path).expect("create stderr capture file");
        let reader = Command::new("cat")
            .stdin(Stdio::from(pipe))
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn cat as the log reader");
        let reader = ChildGuard {
            child: Some(reader),
            name: format!("{name}-log-reader"),
            stderr_path: None,
        };
        let child = ChildGuard {
            child: Some(child),
            name: name.to_owned(),
            stderr_path: Some(stderr_path),
        };
        (child, reader)
    }

    /// The child's piped stdout, to feed the next process of a pipeline.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("child spawned with Stdio::piped() stdout")
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the child has exited, without waiting.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_status().is_none()
    }

    /// Waits for exit up to `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (e.g. "INT", "STOP", "CONT", "KILL") to the child.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.id().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Asks the child to stop with SIGINT (ffmpeg and gst-launch -e then finish their output
    /// file cleanly) and waits up to `timeout`, then kills it.
    pub fn interrupt_and_wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            self.signal("INT");
        }
        let status = self.wait_timeout(timeout);
        if status.is_none() {
            self.kill();
        }
        status
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL ends a SIGSTOPped child too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The captured stderr so far (lossy UTF-8), for assertion messages.
    pub fn stderr(&self) -> String {
        self.stderr_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `cmd` to completion with a hard deadline; panics (with its stderr) on timeout.
pub fn run_with_timeout(name: &str, cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
    // Drain both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_thread = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_thread.join().unwrap_or_default();
            panic!(
                "{name} did not finish within {timeout:?} ({cmd:?}); stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

/// Like [`run_with_timeout`] but also panics if the command exits unsuccessfully.
pub fn run_ok(name: &str, cmd: &mut Command, timeout: Duration) -> Output {
    let out = run_with_timeout(name, cmd, timeout);
    assert!(
        out.status.success(),
        "{name} failed with {} ({cmd:?}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}
