//! The hidden `atelier scripted-step '<step json>'` command: plays ONE file or task-doc step of
//! the scenario format (`write`, `append`, `check`, `uncheck`, `doc_append`, `doc_section`) with
//! the scripted agent's own code, in the current directory and on `$ATELIER_TASK_DOC`.
//!
//! The model simulator makes real CLIs run it through their shell tool, so a scenario edits the
//! task doc the same way whether the scripted agent or a real CLI plays it.

use super::agent::{AgentEnv, play_step};
use crate::scenario::{RunScript, Scenario, Step};
use domain::TranscriptEvent;
use std::io::{self, Write};
use std::path::PathBuf;

/// Exit code of a step that could not be understood (bad JSON, a step kind this command does
/// not play).
pub const EXIT_BAD_STEP: i32 = 2;

/// Plays `step_json` in the current directory. Prints each changed file (`add path` or
/// `modify path`) on stdout and each problem on stderr; returns the exit code: 0 when the step
/// worked, 1 when it failed (e.g. no such to-do item), [`EXIT_BAD_STEP`] for a bad step.
pub fn run_step(step_json: &str) -> i32 {
    let env = AgentEnv {
        input: String::new(),
        workdir: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        task_doc: std::env::var_os("ATELIER_TASK_DOC").map(PathBuf::from),
        exe: std::env::current_exe().map_err(|e| e.to_string()),
    };
    run_step_in(step_json, &env, &mut io::stdout(), &mut io::stderr())
}

/// [`run_step`] with explicit surroundings, for tests.
pub(crate) fn run_step_in(
    step_json: &str,
    env: &AgentEnv,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    // Output is best effort: the exit code is what matters to the calling shell tool.
    let step: Step = match serde_json::from_str(step_json) {
        Ok(step) => step,
        Err(e) => {
            let _ = writeln!(err, "error: invalid step {step_json}: {e}");
            return EXIT_BAD_STEP;
        }
    };
    let playable = matches!(
        step,
        Step::Write { .. }
            | Step::Append { .. }
            | Step::Check { .. }
            | Step::Uncheck { .. }
            | Step::DocAppend { .. }
            | Step::DocSection { .. }
    );
    if !playable {
        let kind = serde_json::to_value(&step)
            .ok()
            .and_then(|v| v.get("do").and_then(|d| d.as_str().map(str::to_string)))
            .unwrap_or_default();
        let _ = writeln!(
            err,
            "error: scripted-step plays write, append, check, uncheck, doc_append and \
             doc_section steps, not `{kind}`"
        );
        return EXIT_BAD_STEP;
    }
    let check = Scenario {
        runs: vec![RunScript::single(vec![step.clone()])],
    };
    if let Err(e) = check.validate() {
        let _ = writeln!(err, "error: {e}");
        return EXIT_BAD_STEP;
    }

    let mut events = Vec::new();
    if let Err(e) = play_step(&step, env, &mut events, err) {
        let _ = writeln!(err, "error: {e}");
        return 1;
    }
    let mut code = 0;
    for line in events.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<TranscriptEvent>(line) {
            Ok(TranscriptEvent::FileChange { path, kind }) => {
                let _ = writeln!(out, "{kind} {path}");
            }
            Ok(TranscriptEvent::Error { message }) => {
                let _ = writeln!(err, "error: {message}");
                code = 1;
            }
            _ => {}
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &std::path::Path, task_doc: Option<&str>) -> AgentEnv {
        AgentEnv {
            input: String::new(),
            workdir: dir.to_path_buf(),
            task_doc: task_doc.map(PathBuf::from),
            exe: Err("no exe in tests".into()),
        }
    }

    fn run(json: &str, env: &AgentEnv) -> (i32, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_step_in(json, env, &mut out, &mut err);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (code, text(out), text(err))
    }

    #[test]
    fn edits_the_task_doc_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let doc = dir.path().join("task.md");
        std::fs::write(&doc, "# T\n\n- [ ] one\n").unwrap();
        let env = env(dir.path(), Some("task.md"));

        let ok = |out: &str| (0, out.to_string(), String::new());
        assert_eq!(
            run(r#"{"do":"check","item":"one"}"#, &env),
            ok("modify task.md\n")
        );
        assert_eq!(
            run(r#"{"do":"doc_section","heading":"Notes","body":"n"}"#, &env),
            ok("modify task.md\n")
        );
        assert_eq!(
            std::fs::read_to_string(&doc).unwrap(),
            "# T\n\n- [x] one\n\n## Notes\n\nn\n"
        );
        assert_eq!(
            run(r#"{"do":"write","path":"d/a.txt","content":"a"}"#, &env),
            ok("add d/a.txt\n")
        );
        assert_eq!(
            run(r#"{"do":"append","path":"d/a.txt","content":"b"}"#, &env),
            ok("modify d/a.txt\n")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("d/a.txt")).unwrap(),
            "ab"
        );
    }

    #[test]
    fn reports_failures_and_bad_steps() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("task.md"), "- [x] one\n").unwrap();
        let (code, out, err) = run(
            r#"{"do":"check","item":"one"}"#,
            &env(dir.path(), Some("task.md")),
        );
        assert_eq!((code, out.as_str()), (1, ""));
        assert_eq!(err, "error: no unchecked to-do item containing `one`\n");

        let (code, _, err) = run(r#"{"do":"doc_append","text":"x"}"#, &env(dir.path(), None));
        assert_eq!(code, 1);
        assert_eq!(
            err,
            "error: ATELIER_TASK_DOC is not set: there is no task doc to edit\n"
        );

        let (code, _, err) = run(r#"{"do":"run","command":"ls"}"#, &env(dir.path(), None));
        assert_eq!(code, EXIT_BAD_STEP);
        assert!(err.contains("not `run`"), "{err}");

        let (code, _, err) = run("{not json", &env(dir.path(), None));
        assert_eq!(code, EXIT_BAD_STEP);
        assert!(err.starts_with("error: invalid step {not json"), "{err}");

        let (code, _, err) = run(r#"{"do":"check","item":" "}"#, &env(dir.path(), None));
        assert_eq!(code, EXIT_BAD_STEP);
        assert!(err.contains("`item` is empty"), "{err}");

        let (code, _, err) = run(
            r#"{"do":"write","path":"../x","content":"a"}"#,
            &env(dir.path(), None),
        );
        assert_eq!(code, 1);
        assert!(err.contains("refusing to write `../x`"), "{err}");
    }
}
