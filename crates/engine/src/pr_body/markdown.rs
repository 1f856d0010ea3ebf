//! Agent-written text made safe to put in markdown a forge renders. Nothing an agent wrote may
//! hide text, inject HTML, load an image or make a link: it is cleaned of control, bidirectional
//! and zero-width characters, bounded, and then either quoted as inline code (with a fence longer
//! than any backtick run inside) or escaped character by character so it reads as plain text.
//! Plain text cannot mention anyone either: a `@` is followed by a zero-width space (written as
//! an entity), so `@someone` or `@org/team` in a doc notifies nobody when the forge renders it
//! (inline code never mentions).

/// Characters that could hide or reorder text: bidirectional controls and marks, and zero-width
/// characters.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{00AD}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// `text` without control characters (tabs become spaces, line and paragraph separators
/// newlines) and without invisible ones.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\u{2028}' | '\u{2029}' => Some('\n'),
            '\t' => Some(' '),
            c if c.is_control() || invisible(c) => None,
            c => Some(c),
        })
        .collect()
}

/// At most `max` characters of `text`, an ellipsis marking a cut.
pub(super) fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` cleaned, on one line (line breaks shown as ` ⏎ `), trimmed and bounded.
pub(super) fn one_line(text: &str, max: usize) -> String {
    let cleaned = clean(text);
    let joined = cleaned
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ⏎ ");
    cap(&joined, max)
}

/// `text` as inline code: cleaned, on one line, bounded, fenced by more backticks than the
/// longest run inside (padded with spaces when it starts or ends with one).
pub(super) fn code(text: &str, max: usize) -> String {
    let text = one_line(text, max);
    if text.is_empty() {
        return "(empty)".to_string();
    }
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    if text.starts_with('`') || text.ends_with('`') {
        format!("{fence} {text} {fence}")
    } else {
        format!("{fence}{text}{fence}")
    }
}

/// ASCII punctuation that means something to markdown wherever it stands (emphasis, code,
/// links, images, HTML, entities, autolinks, tables, strikethrough, math, headings, quotes).
const ALWAYS: &[char] = &[
    '\\', '`', '*', '_', '[', ']', '<', '>', '&', '|', '~', '!', '(', ')', '{', '}', '#', '$',
];

/// What follows every `@` of plain text: a zero-width space, so the forge sees no mention.
const NO_MENTION: &str = "&#8203;";

/// One line of agent text as plain markdown text: cleaned (it must hold no line break), leading
/// spaces dropped (no indented code), every markdown character escaped with a backslash, what
/// would start a block at the line's start (`-`, `+`, `=`, `1.`) escaped too, and every `@`
/// kept from mentioning ([`NO_MENTION`]).
pub(super) fn text_line(line: &str) -> String {
    let line = clean(line).replace('\n', " ");
    let line = line.trim();
    let mut out = String::with_capacity(line.len() + 8);
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    for (i, c) in line.chars().enumerate() {
        let block_start = (i == 0 && matches!(c, '-' | '+' | '='))
            || (i == digits && digits > 0 && matches!(c, '.' | ')'));
        if block_start || ALWAYS.contains(&c) {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push_str(NO_MENTION);
        }
    }
    out
}

/// Agent text of several lines as plain markdown text: bounded to `max` characters, each line
/// escaped (`text_line`), lines kept apart by hard breaks and paragraphs by one blank line.
pub(super) fn text_block(text: &str, max: usize) -> String {
    let text = clean(text);
    let text = text.trim();
    let bounded = cap(text, max);
    let mut paragraphs: Vec<Vec<String>> = vec![Vec::new()];
    for line in bounded.lines() {
        let escaped = text_line(line);
        match paragraphs.last_mut() {
            Some(paragraph) if !escaped.is_empty() => paragraph.push(escaped),
            Some(paragraph) if !paragraph.is_empty() => paragraphs.push(Vec::new()),
            _ => {}
        }
    }
    paragraphs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| p.join("\\\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_mentions_nobody() {
        assert_eq!(
            text_line("ping @alice and @org/team, mail a@b.c"),
            "ping @&#8203;alice and @&#8203;org/team, mail a@&#8203;b.c"
        );
        assert_eq!(
            text_block("cc @bob\n\n@carol", 100),
            "cc @&#8203;bob\n\n@&#8203;carol"
        );
    }

    #[test]
    fn inline_code_is_fenced_longer_than_any_backtick_run() {
        assert_eq!(code("cargo test", 50), "`cargo test`");
        assert_eq!(code("echo `x`", 50), "`` echo `x` ``");
        assert_eq!(code("a ``` b", 50), "````a ``` b````");
        assert_eq!(code("`start", 50), "`` `start ``");
        assert_eq!(code("", 50), "(empty)");
        assert_eq!(code(" \n ", 50), "(empty)");
        assert_eq!(code("one\ntwo\n\nthree", 50), "`one ⏎ two ⏎ three`");
        assert_eq!(code("abcdef", 4), "`abc…`");
    }

    #[test]
    fn hidden_and_reordering_characters_are_removed() {
        assert_eq!(
            clean("a\u{202E}b\u{2066}c\u{200B}d\u{7}e\u{1b}[31mf\tg\u{2028}h\r\n"),
            "abcde[31mf g\nh\n"
        );
        assert_eq!(code("ls\u{202E}txt.exe", 50), "`lstxt.exe`");
    }

    #[test]
    fn text_reads_as_plain_text() {
        assert_eq!(
            text_line("<img src=x onerror=alert(1)> **bold** [a](http://evil) ![i](x) &amp; `c`"),
            "\\<img src=x onerror=alert\\(1\\)\\> \\*\\*bold\\*\\* \\[a\\]\\(http://evil\\) \\!\\[i\\]\\(x\\) \\&amp; \\`c\\`"
        );
        assert_eq!(text_line("<!-- hidden -->"), "\\<\\!-- hidden --\\>");
        assert_eq!(text_line("# Heading"), "\\# Heading");
        assert_eq!(text_line("- item"), "\\- item");
        assert_eq!(text_line("+ item"), "\\+ item");
        assert_eq!(text_line("==="), "\\===");
        assert_eq!(text_line("12. twelve"), "12\\. twelve");
        assert_eq!(text_line("3) three"), "3\\) three");
        assert_eq!(text_line("    indented code"), "indented code");
        assert_eq!(
            text_line("> quote | table ~strike~ $x$"),
            "\\> quote \\| table \\~strike\\~ \\$x\\$"
        );
        assert_eq!(text_line("[^1]: footnote"), "\\[^1\\]: footnote");
        assert_eq!(
            text_line("Add greeting.txt, then 1.5"),
            "Add greeting.txt, then 1.5"
        );
        assert_eq!(text_line("back\\slash"), "back\\\\slash");
    }

    #[test]
    fn blocks_keep_their_lines_and_paragraphs() {
        assert_eq!(
            text_block(
                "\n\nFirst line.\n- a point\n\n\n\nSecond <b>para</b>.\n",
                1000
            ),
            "First line.\\\n\\- a point\n\nSecond \\<b\\>para\\</b\\>."
        );
        assert_eq!(
            text_block("```\n<script>\n```", 1000),
            "\\`\\`\\`\\\n\\<script\\>\\\n\\`\\`\\`"
        );
        assert_eq!(text_block("abcdef", 4), "abc…");
        assert_eq!(text_block("  \n ", 100), "");
    }
}
