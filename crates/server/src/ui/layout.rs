//! The page shell every screen shares: head (embedded stylesheet and script, CSRF token), the
//! navigation, the live-stream hook, and small pieces (time, state badge) used across pages.

use super::assets::{CSS, ICON, JS};
use super::viewer::Viewer;
use domain::TaskState;
use maud::{DOCTYPE, Markup, html};

/// What a page wants from the shell.
pub(crate) struct Page<'a> {
    pub title: &'a str,
    /// The Server-Sent Events URL the page follows (`/api/stream?...`), if it shows live state.
    pub stream: Option<String>,
    /// The nav entry to mark as current.
    pub section: Section,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    Inbox,
    Projects,
    Admin,
    Me,
    None,
}

/// A whole HTML page around `body`.
pub(crate) fn shell<B>(viewer: Option<&Viewer<B>>, page: Page<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(viewer) = viewer {
                    meta name="csrf-token" content=(viewer.csrf);
                }
                title { (page.title) " · Atelier" }
                link rel="icon" href=(ICON.url());
                link rel="stylesheet" href=(CSS.url());
                script src=(JS.url()) defer {}
            }
            body data-stream=[page.stream] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { img src=(ICON.url()) alt="" width="24" height="24"; span { "Atelier" } }
                    @if let Some(viewer) = viewer {
                        nav #nav aria-label="Main" {
                            (nav_link("/", "Inbox", page.section == Section::Inbox))
                            (nav_link("/projects", "Projects", page.section == Section::Projects))
                            @if viewer.who.admin {
                                (nav_link("/admin", "Admin", page.section == Section::Admin))
                            }
                            (nav_link("/me", &viewer.who.login, page.section == Section::Me))
                            button #logout type="button" class="link" { "Sign out" }
                        }
                    }
                }
                p #live-status .live-status role="status" aria-live="polite" {}
                main #main { (body) }
            }
        }
    }
}

fn nav_link(href: &str, label: &str, current: bool) -> Markup {
    html! {
        @if current { a href=(href) aria-current="page" { (label) } }
        @else { a href=(href) { (label) } }
    }
}

/// A timestamp (ms since the epoch) as a `<time>` the script shows in local time; without
/// script it reads as UTC.
pub(crate) fn time(ms: i64) -> Markup {
    let text = utc(ms);
    html! { time datetime=(text) data-ms=(ms) { (text) } }
}

/// `ms` as `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A duration in ms as `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub(crate) fn duration(ms: i64) -> String {
    let secs = ms / 1000;
    match secs {
        s if s < 60 => format!("{:.1} s", ms as f64 / 1000.0),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// The task state as a coloured badge (`data-state` carries the machine name).
pub(crate) fn state_badge(state: &TaskState) -> Markup {
    html! { span.badge data-state=(state.name()) { (state_label(state)) } }
}

/// The badge of a pull request's checks (CI): `pending`, `passed`, `failed` or `none`.
pub(crate) fn checks_badge(overall: &str) -> Markup {
    let label = match overall {
        "passed" => "CI passed",
        "failed" => "CI failed",
        "none" => "no CI",
        _ => "CI pending",
    };
    html! { span.badge data-checks=(overall) { (label) } }
}

/// Whether `url` is a web address, the only kind a page links: anything else a forge, an agent
/// or a user wrote (`javascript:`, `data:`, a path) is shown as text.
pub(crate) fn is_web_address(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// Short human wording of a state.
pub(crate) fn state_label(state: &TaskState) -> String {
    match state {
        TaskState::Running { stage } => format!("{stage} running"),
        TaskState::NeedsInput { stage, .. } => format!("{stage}: question"),
        TaskState::PlanGate => "plan awaits approval".into(),
        TaskState::AwaitingChecks => "PR: checks running".into(),
        TaskState::Closed => "PR closed".into(),
        TaskState::AwaitingMerge { merge_error: None } => "awaiting merge".into(),
        TaskState::AwaitingMerge {
            merge_error: Some(_),
        } => "merge failed".into(),
        TaskState::Merging => "merging".into(),
        TaskState::Blocked { stage, reason } => format!("blocked at {stage}: {}", reason.code()),
        TaskState::Stopped { stage } => format!("stopped at {stage}"),
        TaskState::Waiting { stage, .. } => format!("{stage}: waiting to retry"),
        TaskState::Done { reason } => format!("done ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::{duration, utc};

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_515_200_000), "2026-12-06 00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(duration(4_200), "4.2 s");
        assert_eq!(duration(185_000), "3 min 5 s");
        assert_eq!(duration(7_800_000), "2 h 10 min");
    }
}
