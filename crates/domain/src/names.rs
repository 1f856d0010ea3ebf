//! Validated user-given names: a project's name and a task's title. Each is parsed once, at the
//! edge, into a value that can only hold a valid name, so nothing further in needs to check it.

use std::fmt;

/// Longest project name accepted.
const MAX_PROJECT_NAME: usize = 64;
/// Longest task title accepted, in characters.
const MAX_TITLE: usize = 200;

/// A project's name: 1-64 ASCII letters, digits, `.`, `_` or `-`, and not only digits (a name
/// of digits would read as a project id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectName(String);

/// Why a project name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "project name `{name}` is not valid: use 1-64 letters, digits, `.`, `_` or `-` (not only \
     digits); pass --name"
)]
pub struct InvalidProjectName {
    pub name: String,
}

impl ProjectName {
    pub fn parse(name: &str) -> Result<ProjectName, InvalidProjectName> {
        let valid = !name.is_empty()
            && name.len() <= MAX_PROJECT_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !name.chars().all(|c| c.is_ascii_digit());
        if valid {
            Ok(ProjectName(name.to_string()))
        } else {
            Err(InvalidProjectName {
                name: name.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task's title: trimmed, 1-200 characters on one line, without control characters and
/// without the bidirectional controls that make text display in another order than it is
/// stored (U+202A–U+202E, U+2066–U+2069), which could disguise a title in a list or a log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskTitle(String);

/// Why a task title was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTaskTitle {
    #[error("the task title is empty: give a short summary of the change")]
    Empty,
    #[error(
        "the task title has {chars} characters: keep it to at most 200 (put details in the body)"
    )]
    TooLong { chars: usize },
    #[error(
        "the task title must be one line without control characters (found {found}): put details in \
         the body"
    )]
    Control { found: String },
    #[error(
        "the task title contains the bidirectional control character {found}, which reorders how \
         text is displayed: remove it"
    )]
    Bidi { found: String },
}

/// `U+XXXX` of a character, how errors name invisible characters.
fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl TaskTitle {
    pub fn parse(title: &str) -> Result<TaskTitle, InvalidTaskTitle> {
        let title = title.trim();
        if title.is_empty() {
            return Err(InvalidTaskTitle::Empty);
        }
        let chars = title.chars().count();
        if chars > MAX_TITLE {
            return Err(InvalidTaskTitle::TooLong { chars });
        }
        if let Some(c) = title.chars().find(|c| c.is_control()) {
            return Err(InvalidTaskTitle::Control {
                found: code_point(c),
            });
        }
        if let Some(c) = title.chars().find(|c| is_bidi_control(*c)) {
            return Err(InvalidTaskTitle::Bidi {
                found: code_point(c),
            });
        }
        Ok(TaskTitle(title.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        let long = "a".repeat(64);
        let too_long = "a".repeat(65);
        let cases: Vec<(&str, bool)> = vec![
            ("app", true),
            ("my-app_2.0", true),
            ("A", true),
            ("1a", true),
            (long.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            ("123", false),
            ("my app", false),
            ("a/b", false),
            ("café", false),
            ("-", true),
            ("x\n", false),
        ];
        for (name, ok) in cases {
            let want = if ok {
                Ok(ProjectName(name.to_string()))
            } else {
                Err(InvalidProjectName {
                    name: name.to_string(),
                })
            };
            assert_eq!(ProjectName::parse(name), want, "name {name:?}");
        }
    }

    #[test]
    fn project_name_error_says_what_to_do() {
        let err = ProjectName::parse("a b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "project name `a b` is not valid: use 1-64 letters, digits, `.`, `_` or `-` (not only \
             digits); pass --name"
        );
    }

    #[test]
    fn task_titles() {
        let max = "é".repeat(200);
        let over = "é".repeat(201);
        let ok = |t: &str| Ok(TaskTitle(t.to_string()));
        let cases: Vec<(&str, Result<TaskTitle, InvalidTaskTitle>)> = vec![
            ("Add login", ok("Add login")),
            ("  padded \t", ok("padded")),
            ("日本語のタスク", ok("日本語のタスク")),
            ("Arabic مرحبا mixed", ok("Arabic مرحبا mixed")),
            ("mark\u{200F}ok", ok("mark\u{200F}ok")),
            (max.as_str(), ok(&max)),
            ("", Err(InvalidTaskTitle::Empty)),
            ("   \n ", Err(InvalidTaskTitle::Empty)),
            (over.as_str(), Err(InvalidTaskTitle::TooLong { chars: 201 })),
            (
                "two\nlines",
                Err(InvalidTaskTitle::Control {
                    found: "U+000A".into(),
                }),
            ),
            (
                "bell\u{7}",
                Err(InvalidTaskTitle::Control {
                    found: "U+0007".into(),
                }),
            ),
            (
                "Fix \u{202E}txt.exe",
                Err(InvalidTaskTitle::Bidi {
                    found: "U+202E".into(),
                }),
            ),
            (
                "a\u{202A}b",
                Err(InvalidTaskTitle::Bidi {
                    found: "U+202A".into(),
                }),
            ),
            (
                "a\u{202D}b",
                Err(InvalidTaskTitle::Bidi {
                    found: "U+202D".into(),
                }),
            ),
            (
                "a\u{2066}b",
                Err(InvalidTaskTitle::Bidi {
                    found: "U+2066".into(),
                }),
            ),
            (
                "a\u{2069}b",
                Err(InvalidTaskTitle::Bidi {
                    found: "U+2069".into(),
                }),
            ),
        ];
        for (title, want) in cases {
            assert_eq!(TaskTitle::parse(title), want, "title {title:?}");
        }
    }

    #[test]
    fn bidi_error_names_the_character() {
        let err = TaskTitle::parse("x\u{202E}y").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the task title contains the bidirectional control character U+202E, which reorders how \
             text is displayed: remove it"
        );
    }
}
