//! `guard report --html`: the Markdown report as one page, for the reviewer a CI job
//! hands it to. The Markdown's content exactly (rendered by pulldown-cmark), with
//! its Mermaid timeline drawn as SVG (`guard_common::story::timeline`, the fleet's
//! session page draws the same) so that it shows with no script. Everything in a
//! report came from the session (commands, paths, names): any HTML in it is shown
//! as text, and the page's content security policy allows no script, no request and
//! no frame.

use guard_common::{report::Report, story::timeline::timeline};
use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};

/// The page's style: readable tables and code, the chart the page's width.
const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;color:#24292f;max-width:72rem;\
margin:2rem auto;padding:0 1rem}table{border-collapse:collapse;margin:1rem 0;display:block;\
overflow-x:auto}th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;\
vertical-align:top}th{background:#f6f8fa}code{font:13px ui-monospace,monospace;\
background:#f6f8fa;padding:.1rem .3rem;border-radius:4px;overflow-wrap:anywhere}\
svg.timeline{width:100%;height:auto;border:1px solid #d0d7de;border-radius:6px}\
h1,h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem}";

/// The report of `r` as a whole HTML document.
pub fn render(r: &Report) -> String {
    let markdown = super::markdown(r);
    let mut chart = timeline(r).svg();
    let mut in_chart = false;
    let events = Parser::new_ext(&markdown, Options::ENABLE_TABLES).filter_map(|ev| match ev {
        // The Mermaid block: the same timeline, drawn.
        Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(lang))) if &*lang == "mermaid" => {
            in_chart = true;
            chart
                .take()
                .map(|svg| Event::Html(format!("{svg}\n").into()))
        }
        Event::End(TagEnd::CodeBlock) if in_chart => {
            in_chart = false;
            None
        }
        _ if in_chart => None,
        // The session's own words are never markup.
        Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
        other => Some(other),
    });
    let mut body = String::new();
    pulldown_cmark::html::push_html(&mut body, events);
    // The title as text (escaped as the body's is).
    let mut title = String::new();
    pulldown_cmark::html::push_html(
        &mut title,
        std::iter::once(Event::Text(
            format!("guard report: session {}", r.session).into(),
        )),
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n\
         </html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The story's session (a call that installs a package whose script is killed,
    /// a process left behind), one of whose commands carries markup.
    #[test]
    fn the_page_has_the_report_with_its_timeline_drawn_and_no_markup_of_the_session_s() {
        let mut r = super::super::markdown::story::tests::session();
        r.calls.items[0].command = Some("echo <script>alert(1)</script> <b>x</b>".to_owned());
        let page = render(&r);
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(
            page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""),
            "{page}"
        );
        // The Markdown's sections, its tables, and the chart drawn in place of the
        // Mermaid block.
        for needle in [
            "<h2>The session, in order</h2>",
            "<table>",
            "<svg class=\"timeline\"",
            "<code>node postinstall.js</code>",
            "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;x&lt;/b&gt;",
        ] {
            assert!(page.contains(needle), "{needle:?} not in:\n{page}");
        }
        for absent in ["<script", "<b>x", "gantt", "```"] {
            assert!(!page.contains(absent), "{absent:?} in:\n{page}");
        }
        // Everything before the chart and after it as the Markdown has it: the
        // chart comes right after the section's heading.
        let heading = page
            .find("<h2>The session, in order</h2>")
            .expect("heading");
        let chart = page.find("<svg").expect("chart");
        let first_line = page.find("The session started").expect("story");
        assert!(heading < chart && chart < first_line, "{page}");
    }
}
