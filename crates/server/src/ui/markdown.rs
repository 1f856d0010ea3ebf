//! Markdown from agents and people, rendered as CommonMark with GitHub's extensions (tables,
//! task lists, strikethrough, autolinks) and then sanitized: whatever the source, the HTML that
//! reaches a page has no script, no event handler, no `javascript:` URL, no frame, no style, no
//! image (an image URL would make the reader's browser fetch what an agent chose). Task-list
//! items show ☑/☐ as text, which reads out, rather than unlabelled checkboxes.

use ammonia::Builder;
use maud::{Markup, PreEscaped};
use pulldown_cmark::{Event, Options, Parser, html};
use std::collections::HashSet;
use std::sync::LazyLock;

static SANITIZER: LazyLock<Builder<'static>> = LazyLock::new(|| {
    let mut builder = Builder::default();
    builder
        .rm_tags(["img"])
        .add_tag_attributes("code", ["class"])
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .link_rel(Some("noopener noreferrer nofollow"))
        .attribute_filter(|element, attribute, value| match (element, attribute) {
            ("code", "class") if value.starts_with("language-") => Some(value.into()),
            ("code", "class") => None,
            _ => Some(value.into()),
        });
    builder
});

/// `source` as sanitized HTML.
pub(crate) fn render(source: &str) -> Markup {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_GFM
        | Options::ENABLE_FOOTNOTES;
    let mut raw = String::with_capacity(source.len() * 3 / 2);
    let events = Parser::new_ext(source, options).map(|event| match event {
        Event::TaskListMarker(true) => Event::Text("☑ ".into()),
        Event::TaskListMarker(false) => Event::Text("☐ ".into()),
        other => other,
    });
    html::push_html(&mut raw, events);
    PreEscaped(SANITIZER.clean(&raw).to_string())
}

#[cfg(test)]
mod tests {
    use super::render;

    fn html(source: &str) -> String {
        render(source).into_string()
    }

    #[test]
    fn task_lists_tables_and_code_survive() {
        let out = html(
            "- [x] done\n- [ ] todo\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n",
        );
        assert!(out.contains("<li>☑ done</li>"), "{out}");
        assert!(out.contains("<li>☐ todo</li>"), "{out}");
        assert!(!out.contains("<input"), "{out}");
        assert!(out.contains("<table>"), "{out}");
        assert!(out.contains(r#"<code class="language-rust">"#), "{out}");
    }

    #[test]
    fn scripts_handlers_frames_and_javascript_urls_are_removed() {
        let attacks = [
            "<script>window.__pwned=1</script>",
            "<img src=x onerror=\"window.__pwned=1\">",
            "[click](javascript:window.__pwned=1)",
            "<a href=\"javascript:alert(1)\">x</a>",
            "<iframe src=\"https://example.invalid\"></iframe>",
            "<div onclick=\"window.__pwned=1\" style=\"position:fixed\">x</div>",
            "<svg><script>alert(1)</script></svg>",
            "<form action=/api/tasks><button>go</button></form>",
            "<input type=text name=x value=y>",
            "<object data=x></object><embed src=x>",
            "<a href=\"data:text/html,<script>alert(1)</script>\">d</a>",
            "<meta http-equiv=refresh content=\"0;url=/\">",
            "<img src=\"/api/tasks/1/approve\">",
            "![x](/api/logout)",
        ];
        for attack in attacks {
            let out = html(attack).to_ascii_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onclick",
                "javascript:",
                "<iframe",
                "style=",
                "<form",
                "<object",
                "<embed",
                "<img",
                "data:text",
                "<meta",
                "type=\"text\"",
            ] {
                assert!(!out.contains(bad), "{attack:?} rendered as {out:?}");
            }
        }
    }

    #[test]
    fn links_are_kept_with_a_safe_rel() {
        let out = html("[docs](https://example.com/a)");
        assert!(out.contains(r#"href="https://example.com/a""#), "{out}");
        assert!(out.contains("noopener"), "{out}");
    }
}
