//! Trimming a GitHub Actions job log to what an agent needs: the failing step's section (from
//! its `##[group]Run …` line to the next step's `##[group]`), timestamps stripped, capped in
//! lines and bytes from the end — with every `##[error]` line kept even when the cap cuts the
//! text around it, and a note saying what was cut.

/// At most this many lines of the step are kept.
pub(crate) const MAX_LINES: usize = 200;
/// At most this many bytes of the step are kept.
pub(crate) const MAX_BYTES: usize = 16 * 1024;

/// The part of `log` that belongs to the step `step` (or, when no step is named or found, to
/// the section with the first `##[error]`; else the whole log), trimmed.
pub(crate) fn trim_job_log(log: &str, step: Option<&str>) -> String {
    let lines: Vec<&str> = log
        .trim_start_matches('\u{feff}')
        .lines()
        .map(strip_timestamp)
        .collect();
    let group_starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("##[group]"))
        .map(|(i, _)| i)
        .collect();
    let section_of = |start: usize| {
        let end = group_starts
            .iter()
            .copied()
            .find(|&i| i > start)
            .unwrap_or(lines.len());
        start..end
    };
    let by_step = step.and_then(|step| {
        let step = step.trim();
        let step_run = step.strip_prefix("Run ").unwrap_or(step);
        group_starts.iter().copied().find(|&i| {
            let title = lines[i].trim_start_matches("##[group]").trim();
            title == step
                || title
                    .strip_prefix("Run ")
                    .is_some_and(|t| t.trim() == step_run)
        })
    });
    let by_error = || {
        let first_error = lines.iter().position(|l| l.starts_with("##[error]"))?;
        Some(
            group_starts
                .iter()
                .copied()
                .rev()
                .find(|&i| i <= first_error)
                .unwrap_or(0),
        )
    };
    let range = match by_step.or_else(by_error) {
        Some(start) => section_of(start),
        None => 0..lines.len(),
    };
    cap(&lines[range])
}

/// GitHub prefixes every line with `2024-05-01T12:00:00.1234567Z `.
fn strip_timestamp(line: &str) -> &str {
    let Some((first, rest)) = line.split_once(' ') else {
        return line;
    };
    let looks_like_time = first.len() >= 20
        && first.ends_with('Z')
        && first.as_bytes().get(4) == Some(&b'-')
        && first.as_bytes().get(10) == Some(&b'T')
        && first.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    if looks_like_time { rest } else { line }
}

/// The last lines within the caps, preceded by the `##[error]` lines that were cut and a note.
fn cap(lines: &[&str]) -> String {
    let mut kept_from = lines.len();
    let mut bytes = 0;
    while kept_from > 0 {
        let line = lines[kept_from - 1];
        if lines.len() - kept_from >= MAX_LINES || bytes + line.len() + 1 > MAX_BYTES {
            break;
        }
        bytes += line.len() + 1;
        kept_from -= 1;
    }
    let mut out = String::new();
    if kept_from > 0 {
        let cut_errors: Vec<&str> = lines[..kept_from]
            .iter()
            .copied()
            .filter(|l| l.starts_with("##[error]"))
            .collect();
        out.push_str(&format!(
            "[atelier: {kept_from} earlier lines of this step were cut; the last {} are shown]\n",
            lines.len() - kept_from
        ));
        for line in cut_errors {
            out.push_str(line);
            out.push('\n');
        }
    }
    for line in &lines[kept_from..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\u{feff}2024-05-01T12:00:00.0000000Z ##[group]Run actions/checkout@v4
2024-05-01T12:00:00.1000000Z with: repository
2024-05-01T12:00:01.0000000Z ##[endgroup]
2024-05-01T12:00:02.0000000Z Checked out the secret-free tree
2024-05-01T12:00:03.0000000Z ##[group]Run cargo test
2024-05-01T12:00:03.1000000Z cargo test
2024-05-01T12:00:03.2000000Z ##[endgroup]
2024-05-01T12:00:04.0000000Z test tests::adds ... FAILED
2024-05-01T12:00:05.0000000Z ##[error]Process completed with exit code 101.
2024-05-01T12:00:06.0000000Z ##[group]Run cleanup
2024-05-01T12:00:06.1000000Z cleaning
";

    #[test]
    fn keeps_the_failing_steps_section_without_timestamps() {
        let expected = "##[group]Run cargo test
cargo test
##[endgroup]
test tests::adds ... FAILED
##[error]Process completed with exit code 101.
";
        assert_eq!(trim_job_log(LOG, Some("cargo test")), expected);
        assert_eq!(trim_job_log(LOG, Some("Run cargo test")), expected);
        // An unknown step name falls back to the section holding the first error.
        assert_eq!(trim_job_log(LOG, Some("Test")), expected);
        assert_eq!(trim_job_log(LOG, None), expected);
    }

    #[test]
    fn a_log_without_groups_or_errors_is_kept_whole() {
        assert_eq!(trim_job_log("a\nb\n", None), "a\nb\n");
    }

    #[test]
    fn long_steps_are_cut_from_the_start_keeping_error_lines() {
        let mut log = String::from("##[group]Run make\n##[error]early failure\n");
        for i in 0..500 {
            log.push_str(&format!("line {i}\n"));
        }
        log.push_str("##[error]final failure\n");
        let trimmed = trim_job_log(&log, Some("make"));
        let lines: Vec<&str> = trimmed.lines().collect();
        assert!(
            lines[0].contains("earlier lines of this step were cut"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "##[error]early failure");
        assert_eq!(lines.last().copied(), Some("##[error]final failure"));
        assert!(!trimmed.contains("line 0\n"));
        assert_eq!(lines.len(), MAX_LINES + 2);

        let huge = format!("##[group]Run x\n{}\n", "y".repeat(40_000));
        let trimmed = trim_job_log(&huge, Some("x"));
        assert!(trimmed.len() <= MAX_BYTES + 200, "{}", trimmed.len());
    }
}
