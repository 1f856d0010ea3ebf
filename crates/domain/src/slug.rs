//! Safe names derived from user titles: branch and folder names that never contain shell
//! metacharacters, path separators, `..` or non-ASCII bytes.

/// Longest slug we produce; branch names stay readable and paths short.
const MAX_SLUG: usize = 40;

/// Turns any title into `[a-z0-9-]+`, at most 40 bytes, never empty (falls back to `task`).
pub fn slugify(title: &str) -> String {
    let mut slug = String::new();
    let mut pending_dash = false;
    for ch in title.chars() {
        if ch.is_ascii_alphanumeric() {
            let dash = pending_dash && !slug.is_empty();
            if slug.len() + usize::from(dash) + 1 > MAX_SLUG {
                break;
            }
            if dash {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(ch.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        "task".to_string()
    } else {
        slug.to_string()
    }
}

/// The key naming a task's folders: `<id>-<slug>`.
pub fn task_key(id: crate::TaskId, title: &str) -> String {
    format!("{}-{}", id.0, slugify(title))
}

/// The branch of a task: `atelier/<id>-<slug>`.
pub fn branch_name(id: crate::TaskId, title: &str) -> String {
    format!("atelier/{}", task_key(id, title))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskId;

    #[test]
    fn unsafe_titles_become_safe_names() {
        let cases = [
            ("Add login page", "add-login-page"),
            ("\"quoted\" 'title'", "quoted-title"),
            ("a/b\\c", "a-b-c"),
            ("../../etc/passwd", "etc-passwd"),
            ("$(rm -rf /) `id`", "rm-rf-id"),
            ("Ünïcødé café ☕", "n-c-d-caf"),
            ("日本語", "task"),
            ("", "task"),
            ("--leading and trailing--", "leading-and-trailing"),
        ];
        for (title, want) in cases {
            assert_eq!(slugify(title), want, "title {title:?}");
        }
    }

    #[test]
    fn slugs_are_bounded_and_charset_limited() {
        let long = "word ".repeat(100);
        let slug = slugify(&long);
        assert!(slug.len() <= MAX_SLUG);
        assert!(!slug.ends_with('-'));
        assert!(
            slug.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
    }

    #[test]
    fn branch_and_key_carry_the_id() {
        assert_eq!(task_key(TaskId(7), "Fix it"), "7-fix-it");
        assert_eq!(branch_name(TaskId(7), "Fix it"), "atelier/7-fix-it");
    }
}
