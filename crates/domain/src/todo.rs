//! The to-do list of a task doc: the `- [ ]`/`- [x]` items of its "To-Do List" section, read
//! from the doc's markdown. The guards use it: a `ready` verdict is refused while items are
//! unchecked, and an implement run that checked no new item (and committed nothing) made no
//! progress.
//!
//! The section is the one under a heading named "To-Do List" (any level; also "To-do",
//! "Todo", "TODO list", case and punctuation ignored) and runs to the next heading of the same or
//! a higher level, so its `### Implementation`/`### Testing` sub-sections belong to it. Items
//! are list lines (`-`, `*`, `+` or `1.`) starting with a checkbox, at any depth of nesting.
//! Fenced code blocks (```` ``` ```` or `~~~`) are skipped: a checkbox or a heading inside one
//! is an example, not an item. A doc without such a section has no items.

/// One checkbox item of the to-do list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TodoItem {
    /// The item's text after its checkbox, trimmed.
    pub text: String,
    pub checked: bool,
    /// 1-based line of the item in the doc.
    pub line: usize,
}

/// Every item of the doc's to-do section(s), in order.
pub fn todo_items(doc: &str) -> Vec<TodoItem> {
    let mut items = Vec::new();
    // The level of the to-do heading whose section we are in, if any.
    let mut section: Option<usize> = None;
    let mut fence: Option<(char, usize)> = None;
    for (index, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some((ch, len)) = fence_marker(trimmed) {
            match fence {
                None => fence = Some((ch, len)),
                Some((open, open_len)) if open == ch && len >= open_len => fence = None,
                Some(_) => {}
            }
            continue;
        }
        if fence.is_some() {
            continue;
        }
        if let Some((level, title)) = heading(line) {
            match section {
                Some(open) if level > open => {}
                _ => section = is_todo_title(title).then_some(level),
            }
            continue;
        }
        if section.is_none() {
            continue;
        }
        if let Some((checked, text)) = checkbox(trimmed) {
            items.push(TodoItem {
                text: text.to_string(),
                checked,
                line: index + 1,
            });
        }
    }
    items
}

/// The unchecked items of the doc's to-do list.
pub fn unchecked_items(doc: &str) -> Vec<TodoItem> {
    todo_items(doc)
        .into_iter()
        .filter(|item| !item.checked)
        .collect()
}

/// How many items of the doc's to-do list are checked.
pub fn checked_count(doc: &str) -> u32 {
    todo_items(doc).iter().filter(|item| item.checked).count() as u32
}

/// A fence line's character and length (three or more backticks or tildes).
fn fence_marker(trimmed: &str) -> Option<(char, usize)> {
    let ch = trimmed.chars().next().filter(|c| *c == '`' || *c == '~')?;
    let len = trimmed.chars().take_while(|c| *c == ch).count();
    (len >= 3).then_some((ch, len))
}

/// An ATX heading (`#` to `######`, at most three spaces of indent): its level and title.
fn heading(line: &str) -> Option<(usize, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent > 3 {
        return None;
    }
    let rest = &line[indent..];
    let level = rest.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let title = &rest[level..];
    if !(title.is_empty() || title.starts_with([' ', '\t'])) {
        return None;
    }
    Some((level, title.trim().trim_end_matches('#').trim()))
}

fn is_todo_title(title: &str) -> bool {
    let plain: String = title
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(plain.as_str(), "todolist" | "todo" | "todos" | "todoitems")
}

/// A list item that starts with a checkbox: whether it is checked, and its text.
fn checkbox(trimmed: &str) -> Option<(bool, &str)> {
    let rest = if let Some(rest) = trimmed.strip_prefix(['-', '*', '+']) {
        rest
    } else {
        let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        trimmed[digits..].strip_prefix(['.', ')'])?
    };
    let rest = rest.strip_prefix([' ', '\t'])?.trim_start();
    let (checked, text) = if let Some(text) = rest.strip_prefix("[ ]") {
        (false, text)
    } else if let Some(text) = rest
        .strip_prefix("[x]")
        .or_else(|| rest.strip_prefix("[X]"))
    {
        (true, text)
    } else {
        return None;
    };
    if !(text.is_empty() || text.starts_with([' ', '\t'])) {
        return None;
    }
    Some((checked, text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(text: &str, checked: bool, line: usize) -> TodoItem {
        TodoItem {
            text: text.into(),
            checked,
            line,
        }
    }

    #[test]
    fn reads_the_items_of_the_to_do_section_with_its_sub_sections() {
        let doc = "# Task\n\n## Overview\n\n- [ ] not an item: another section\n\n\
                   ## To-Do List\n\n### Implementation\n\n- [x] Add greeting.txt\n\
                   - [ ] Add farewell.txt\n  - [ ] nested detail\n\n### Testing\n\n\
                   * [ ] star item\n+ [X] plus item\n1. [ ] numbered item\n- plain bullet\n\
                   - [x]no space is not a box\n\n## Review Findings\n\n- [ ] findings are not items\n";
        assert_eq!(
            todo_items(doc),
            vec![
                item("Add greeting.txt", true, 11),
                item("Add farewell.txt", false, 12),
                item("nested detail", false, 13),
                item("star item", false, 17),
                item("plus item", true, 18),
                item("numbered item", false, 19),
            ]
        );
        assert_eq!(
            unchecked_items(doc)
                .iter()
                .map(|i| i.text.as_str())
                .collect::<Vec<_>>(),
            [
                "Add farewell.txt",
                "nested detail",
                "star item",
                "numbered item"
            ]
        );
        assert_eq!(checked_count(doc), 2);
    }

    #[test]
    fn code_blocks_are_examples_not_items() {
        let doc = "## To-Do List\n\n```markdown\n- [ ] inside a fence\n## Not a heading\n```\n\
                   - [ ] real item\n~~~~\n- [ ] tilde fence\n```\n- [ ] still fenced\n~~~~\n\
                   - [x] after the fence\n";
        assert_eq!(
            todo_items(doc),
            vec![
                item("real item", false, 7),
                item("after the fence", true, 13)
            ]
        );
    }

    #[test]
    fn a_doc_without_a_to_do_section_has_no_items() {
        assert_eq!(todo_items(""), vec![]);
        assert_eq!(todo_items("# T\n\n- [ ] loose checkbox\n"), vec![]);
        assert_eq!(
            todo_items("## Notes\n\n- [ ] a note\n## To-Do List\n"),
            vec![]
        );
        assert_eq!(checked_count("- [x] loose"), 0);
    }

    #[test]
    fn heading_names_and_levels() {
        for title in ["## To-Do List", "# TODO", "### Todo list ##", "## To do"] {
            let doc = format!("{title}\n- [ ] x\n");
            assert_eq!(todo_items(&doc).len(), 1, "{title}");
        }
        for title in [
            "## Todos and more",
            "####### To-Do List",
            "##To-Do List",
            "    ## To-Do List",
        ] {
            let doc = format!("{title}\n- [ ] x\n");
            assert_eq!(todo_items(&doc).len(), 0, "{title}");
        }
        // A heading of the same level ends the section; a deeper one does not.
        let doc = "### To-Do List\n#### Sub\n- [ ] in\n### Other\n- [ ] out\n# Top\n- [ ] out\n";
        assert_eq!(todo_items(doc), vec![item("in", false, 3)]);
    }
}
