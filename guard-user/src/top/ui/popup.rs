//! `guard top`'s pop-ups over the panes: the help, a session's report, a kill to
//! confirm.

use ratatui::{
    Frame,
    layout::{Alignment, Rect},
    style::{Modifier, Style},
    text::{Line, Span},
    widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap},
};

use super::bold;
use crate::top::state::short_id;

fn popup(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "move in the focused pane"),
    ("PgUp PgDn g G", "move faster, to the top, to the end"),
    ("Tab  Shift-Tab", "next / previous pane"),
    ("Enter", "select the session: go to its process tree"),
    ("/", "filter events by text (Enter keeps, Esc clears)"),
    ("f  F", "cycle the kind filter"),
    ("Esc", "clear both filters"),
    ("space  p", "pause / resume the event feed"),
    (
        "s",
        "show / hide reads of system files (libraries, /proc, …)",
    ),
    (
        "d",
        "where the sockets went, bytes out and in (d again: events)",
    ),
    ("K", "kill the selected session (asks first)"),
    (
        "r",
        "the selected session's report (↑ ↓ PgUp PgDn scroll, Esc closes)",
    ),
    (
        "x",
        "kill the selected process and its children (tree pane)",
    ),
    ("?", "this help"),
    ("q  Ctrl-C", "quit"),
];

pub(super) fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!(" {k:<15}"), bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        " Violations are shown in red. Any key closes this help.",
        Style::default().add_modifier(Modifier::DIM),
    )));
    let rect = popup(area, 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(Span::styled(" guard top: keys ", bold()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

/// A session's report over the whole view, from line `top`.
pub(super) fn draw_report(
    frame: &mut Frame<'_>,
    area: Rect,
    session: &str,
    lines: &[String],
    top: usize,
) {
    let rect = popup(
        area,
        area.width.saturating_sub(4),
        area.height.saturating_sub(2),
    );
    frame.render_widget(Clear, rect);
    let title = format!(
        " report {} · line {}/{} · Esc closes ",
        short_id(session),
        (top + 1).min(lines.len()),
        lines.len()
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(Span::styled(title, bold()));
    let shown: Vec<Line<'_>> = lines
        .iter()
        .skip(top)
        .take(rect.height as usize)
        .map(|l| {
            if l.starts_with('#') {
                Line::from(Span::styled(l.as_str(), bold()))
            } else {
                Line::raw(l.as_str())
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(shown).block(block), rect);
}

pub(super) fn draw_confirm(frame: &mut Frame<'_>, area: Rect, question: &str) {
    let len = question.chars().count() as u16;
    let width = len.saturating_add(4).clamp(36, 72).min(area.width);
    let text_width = width.saturating_sub(2).max(1);
    let rect = popup(area, width, len.div_ceil(text_width) + 4);
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Double)
        .title(Span::styled(" Confirm ", bold()));
    let lines = vec![
        Line::from(Span::styled(question.to_owned(), bold())),
        Line::raw(""),
        Line::from(vec![
            Span::styled("y", bold().add_modifier(Modifier::UNDERLINED)),
            Span::raw(" kill    "),
            Span::styled("n", bold().add_modifier(Modifier::UNDERLINED)),
            Span::raw(" cancel"),
        ]),
    ];
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}
