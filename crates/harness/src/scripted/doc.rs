//! Pure edits of the task doc (Markdown) that the scripted agent performs: toggling a to-do
//! checkbox, appending text, replacing a `## ` section. Kept apart from file I/O so every rule is
//! a table test.

/// Toggles the first `- [ ]` (when `checked` is true) or `- [x]` (when false) checkbox line that
/// contains `item`. `None` when no such line exists.
pub(crate) fn set_checkbox(doc: &str, item: &str, checked: bool) -> Option<String> {
    let (from, to): (&[&str], &str) = if checked {
        (&["- [ ]"], "- [x]")
    } else {
        (&["- [x]", "- [X]"], "- [ ]")
    };
    let mut out = String::with_capacity(doc.len());
    let mut done = false;
    for line in doc.split_inclusive('\n') {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let boxed = from.iter().find(|b| body.starts_with(**b));
        match boxed {
            Some(b) if !done && line.contains(item) => {
                out.push_str(indent);
                out.push_str(to);
                out.push_str(&body[b.len()..]);
                done = true;
            }
            _ => out.push_str(line),
        }
    }
    done.then_some(out)
}

/// Appends `text` on a line of its own.
pub(crate) fn append(doc: &str, text: &str) -> String {
    let mut out = doc.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Replaces the body of the `## heading` section (up to the next `## ` heading) with `body`, or
/// appends the section at the end when the doc has none.
pub(crate) fn set_section(doc: &str, heading: &str, body: &str) -> String {
    let title = format!("## {}", heading.trim());
    let body = body.trim_start_matches(['\n', '\r']).trim_end();
    let mut section = format!("{title}\n");
    if !body.is_empty() {
        section.push('\n');
        section.push_str(body);
        section.push('\n');
    }

    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|l| l.trim_end() == title) else {
        let mut out = doc.to_string();
        if !out.is_empty() {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.ends_with("\n\n") {
                out.push('\n');
            }
        }
        out.push_str(&section);
        return out;
    };
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("## "))
        .map_or(lines.len(), |i| start + 1 + i);
    let mut out = lines[..start].concat();
    out.push_str(&section);
    if end < lines.len() {
        out.push('\n');
        out.push_str(&lines[end..].concat());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "# Task\n\n## To-Do List\n\n- [ ] add parser\n  - [x] add tests\n- [ ] add docs\n";

    #[test]
    fn checks_and_unchecks_the_first_matching_box() {
        assert_eq!(
            set_checkbox(DOC, "add", true).as_deref(),
            Some(
                "# Task\n\n## To-Do List\n\n- [x] add parser\n  - [x] add tests\n- [ ] add docs\n"
            )
        );
        assert_eq!(
            set_checkbox(DOC, "docs", true).as_deref(),
            Some(
                "# Task\n\n## To-Do List\n\n- [ ] add parser\n  - [x] add tests\n- [x] add docs\n"
            )
        );
        assert_eq!(
            set_checkbox(DOC, "add", false).as_deref(),
            Some(
                "# Task\n\n## To-Do List\n\n- [ ] add parser\n  - [ ] add tests\n- [ ] add docs\n"
            )
        );
        assert_eq!(
            set_checkbox("- [X] big x", "big", false).as_deref(),
            Some("- [ ] big x")
        );
        assert_eq!(set_checkbox(DOC, "tests", true), None);
        assert_eq!(set_checkbox(DOC, "Task", true), None);
        assert_eq!(set_checkbox(DOC, "missing", false), None);
    }

    #[test]
    fn appends_on_a_line_of_its_own() {
        assert_eq!(append("a", "b"), "a\nb\n");
        assert_eq!(append("a\n", "b\n"), "a\nb\n");
        assert_eq!(append("", "b"), "b\n");
    }

    #[test]
    fn replaces_a_section_body_up_to_the_next_heading() {
        let doc = "# T\n\n## Plan\n\nold\n### sub\nold too\n\n## Review Findings\n\nkeep\n";
        assert_eq!(
            set_section(doc, "Plan", "new\nlines\n"),
            "# T\n\n## Plan\n\nnew\nlines\n\n## Review Findings\n\nkeep\n"
        );
        assert_eq!(
            set_section(doc, "Review Findings", "- none"),
            "# T\n\n## Plan\n\nold\n### sub\nold too\n\n## Review Findings\n\n- none\n"
        );
        assert_eq!(
            set_section(doc, "Plan", ""),
            "# T\n\n## Plan\n\n## Review Findings\n\nkeep\n"
        );
    }

    #[test]
    fn appends_a_missing_section() {
        assert_eq!(
            set_section("# T\n\ntext", "Notes", "n"),
            "# T\n\ntext\n\n## Notes\n\nn\n"
        );
        assert_eq!(
            set_section("# T\n\n", "Notes", "n"),
            "# T\n\n## Notes\n\nn\n"
        );
        assert_eq!(set_section("", "Notes", "n"), "## Notes\n\nn\n");
    }
}
