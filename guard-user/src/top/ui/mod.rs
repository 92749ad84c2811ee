//! Drawing `guard top`: a pure function of [`App`]. Colours stay the terminal's
//! own (default foreground and background, with bold, reverse, dim and underline)
//! so the view reads on dark and light themes; red is kept for violations.

mod popup;

use chrono::{DateTime, Utc};
use ratatui::{
    Frame,
    layout::{Alignment, Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span, Text},
    widgets::{
        Block, BorderType, Borders, Cell, HighlightSpacing, List, ListItem, ListState, Paragraph,
        Row, Table, TableState, Wrap,
    },
};

use self::popup::{draw_confirm, draw_help, draw_report};
use super::state::{App, Event, Focus, Mode, Session};

/// Below this the view is reduced to sessions plus one pane.
const FULL_WIDTH: u16 = 80;
const FULL_HEIGHT: u16 = 16;
/// Below this only a notice is drawn.
const MIN_WIDTH: u16 = 20;
const MIN_HEIGHT: u16 = 5;

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn violation() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

fn pane(title: String, focused: bool) -> Block<'static> {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, bold()));
    if focused {
        block.border_type(BorderType::Thick)
    } else {
        block.border_type(BorderType::Plain)
    }
}

fn selection(focused: bool) -> Style {
    if focused {
        Style::default().add_modifier(Modifier::REVERSED)
    } else {
        bold()
    }
}

pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = Paragraph::new("guard top: terminal too small").wrap(Wrap { trim: true });
        frame.render_widget(text, area);
        return;
    }
    if area.width < FULL_WIDTH || area.height < FULL_HEIGHT {
        draw_compact(frame, app, area);
    } else {
        draw_full(frame, app, area);
    }
    match &app.mode {
        Mode::Help => draw_help(frame, area),
        Mode::Confirm { question, .. } => draw_confirm(frame, area, question),
        Mode::Report {
            session,
            lines,
            top,
        } => draw_report(frame, area, session, lines, *top),
        Mode::Normal | Mode::Filter => {}
    }
}

/// `n * num / den`, without overflow.
fn share(n: u16, num: u32, den: u32) -> u16 {
    u16::try_from(u32::from(n) * num / den).unwrap_or(u16::MAX)
}

fn draw_full(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let wanted = app.sessions.len().clamp(1, 1000) as u16 + 3;
    let sessions_h = wanted.clamp(4, share(area.height, 2, 5).max(4));
    let [top, middle, status, hints] = Layout::vertical([
        Constraint::Length(sessions_h),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_sessions(frame, app, top, false);
    let [tree, feed] =
        Layout::horizontal([Constraint::Percentage(36), Constraint::Percentage(64)]).areas(middle);
    draw_tree(frame, app, tree);
    if app.dests_view {
        draw_dests(frame, app, feed);
    } else {
        draw_feed(frame, app, feed, false);
    }
    draw_status(frame, app, status, false);
    draw_hints(frame, app, hints);
}

/// Small terminals: the sessions, then the tree or the feed (whichever has the
/// focus), then one line of status or prompt.
fn draw_compact(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let wanted = app.sessions.len().clamp(1, 1000) as u16 + 3;
    let sessions_h = wanted.clamp(3, share(area.height.saturating_sub(1), 3, 5).max(4));
    let [top, bottom, status] = Layout::vertical([
        Constraint::Length(sessions_h),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_sessions(frame, app, top, true);
    if app.focus == Focus::Tree {
        draw_tree(frame, app, bottom);
    } else if app.dests_view {
        draw_dests(frame, app, bottom);
    } else {
        draw_feed(frame, app, bottom, true);
    }
    if matches!(app.mode, Mode::Filter) || app.message.is_some() {
        draw_hints(frame, app, status);
    } else {
        draw_status(frame, app, status, true);
    }
}

pub fn age(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> String {
    let Some(from) = from else {
        return "-".to_owned();
    };
    let s = (to - from).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).alignment(Alignment::Right))
}

#[expect(
    clippy::too_many_lines,
    reason = "the compact and the full table, each with its headers, cells and widths side by side"
)]
fn draw_sessions(frame: &mut Frame<'_>, app: &App, area: Rect, compact: bool) {
    let focused = app.focus == Focus::Sessions;
    let running = app.sessions.iter().filter(|s| s.running).count();
    let title = if app.loaded {
        format!(
            " Sessions: {running} running, {} in all ",
            app.sessions.len()
        )
    } else {
        " Sessions: connecting… ".to_owned()
    };
    let block = pane(title, focused);
    let viol_cell = |s: &Session| {
        let n = s.counts.violations;
        let cell = right(n.to_string());
        if n > 0 { cell.style(violation()) } else { cell }
    };
    let (header, widths, rows): (Vec<&str>, Vec<Constraint>, Vec<Row<'_>>) = if compact {
        let rows = app
            .sessions
            .iter()
            .map(|s| {
                let row = Row::new(vec![
                    Cell::from(s.agent.clone()),
                    right(s.root_pid.to_string()),
                    right(s.counts.exec.to_string()),
                    viol_cell(s),
                ]);
                if s.running {
                    row
                } else {
                    row.style(Style::default().add_modifier(Modifier::DIM))
                }
            })
            .collect();
        (
            vec!["AGENT", "ROOT", "EXEC", "VIOL"],
            vec![
                Constraint::Fill(1),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(4),
            ],
            rows,
        )
    } else {
        let rows = app
            .sessions
            .iter()
            .map(|s| {
                let row = Row::new(vec![
                    Cell::from(s.agent.clone()),
                    right(s.root_pid.to_string()),
                    Cell::from(s.user_name()),
                    Cell::from(s.place().to_owned()),
                    Cell::from(s.container.clone().unwrap_or_else(|| "-".to_owned())),
                    right(age(s.started, s.ended.unwrap_or(app.now))),
                    Cell::from(if s.running { "run" } else { "ended" }),
                    right(s.counts.exec.to_string()),
                    right(s.counts.open.to_string()),
                    right(s.counts.connect.to_string()),
                    right(crate::cli::clients::human_bytes(s.counts.bytes_out)),
                    viol_cell(s),
                ]);
                if s.running {
                    row
                } else {
                    row.style(Style::default().add_modifier(Modifier::DIM))
                }
            })
            .collect();
        (
            vec![
                "AGENT",
                "ROOT",
                "USER",
                "DIR/REPO",
                "CONTAINER",
                "AGE",
                "STATE",
                "EXEC",
                "OPEN",
                "CONN",
                "OUT",
                "VIOL",
            ],
            vec![
                Constraint::Length(14),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Fill(1),
                Constraint::Length(12),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(5),
            ],
            rows,
        )
    };
    let numeric = |h: &str| {
        matches!(
            h,
            "ROOT" | "AGE" | "EXEC" | "OPEN" | "CONN" | "OUT" | "VIOL"
        )
    };
    let header = Row::new(
        header
            .into_iter()
            .map(|h| {
                if numeric(h) {
                    right(h.to_owned())
                } else {
                    Cell::from(h)
                }
            })
            .collect::<Vec<_>>(),
    )
    .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    if app.sessions.is_empty() {
        let text = if app.loaded {
            "no agent sessions yet"
        } else {
            "waiting for the daemon…"
        };
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled(
                text,
                Style::default().add_modifier(Modifier::DIM),
            )),
            inner,
        );
        return;
    }
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(1)
        .row_highlight_style(selection(focused))
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_tree(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let focused = app.focus == Focus::Tree;
    let title = match app.selected_session() {
        Some(s) => match &s.agent_thread {
            // The thread id's last 8 characters (the random part of a UUIDv7); the
            // whole id is in `guard sessions`.
            Some(thread) => format!(
                " Processes of {} {} (thread …{}) ",
                s.agent,
                s.short_id(),
                thread
                    .char_indices()
                    .rev()
                    .nth(7)
                    .map_or(thread.as_str(), |(i, _)| &thread[i..])
            ),
            None => format!(" Processes of {} {} ", s.agent, s.short_id()),
        },
        None => " Processes ".to_owned(),
    };
    let block = pane(title, focused);
    let rows = app.tree();
    if rows.is_empty() {
        let text = match app.selected_session() {
            Some(s) if !s.running => "the session has ended",
            Some(_) => "no processes",
            None => "no session selected",
        };
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled(
                text,
                Style::default().add_modifier(Modifier::DIM),
            )),
            inner,
        );
        return;
    }
    let selected = app
        .tree_pid
        .and_then(|pid| rows.iter().position(|r| r.pid == pid));
    let items: Vec<ListItem<'_>> = rows
        .into_iter()
        .map(|r| {
            let mut spans = vec![
                Span::styled(format!("{:>7} ", r.pid), bold()),
                Span::raw(r.prefix),
            ];
            if let Some(role) = r.role {
                spans.push(Span::styled(
                    format!("{role}: "),
                    Style::default().add_modifier(Modifier::DIM),
                ));
            }
            if let Some(package) = r.package {
                // A package's script (an install script runs arbitrary code): in
                // bold, not in a colour (red is for violations).
                spans.push(Span::styled(format!("script of {package}: "), bold()));
            }
            if let Some(why) = r.undeclared {
                // No declared call accounts for it (a process left behind, work
                // no call asked for): bold, as a script is.
                let why = match why.as_str() {
                    "outlived_call" => "outlived its call: ",
                    _ => "undeclared: ",
                };
                spans.push(Span::styled(why, bold()));
            }
            match r.sandboxed {
                Some(true) => spans.push(Span::styled(
                    "sandboxed ",
                    Style::default().add_modifier(Modifier::DIM),
                )),
                Some(false) => spans.push(Span::styled("unsandboxed ", violation())),
                None => {}
            }
            spans.push(Span::raw(r.command));
            ListItem::new(Line::from(spans))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(selection(focused))
        .highlight_symbol(">")
        .highlight_spacing(HighlightSpacing::Always);
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut state);
}

fn feed_line(ev: &Event, compact: bool) -> Line<'static> {
    let mut spans = Vec::with_capacity(6);
    let kind = match ev.kind.as_str() {
        "session_start" => "start",
        "session_end" => "end",
        other => other,
    };
    if compact {
        spans.push(Span::raw(format!("{:>7} ", ev.pid)));
        spans.push(Span::styled(format!("{kind:<7} "), bold()));
    } else {
        let time = ev.time.get(..8).unwrap_or(&ev.time);
        spans.push(Span::raw(format!(
            "{time:<8} {:>7} {:<12.12} ",
            ev.pid, ev.comm
        )));
        spans.push(Span::styled(format!("{kind:<7} "), bold()));
    }
    match &ev.violation {
        Some(v) => {
            let mut tag = format!("! {}", v.rule);
            if let Some(action) = &v.action {
                tag.push_str(&format!(" → {action}"));
            }
            if let Some(outcome) = &v.outcome {
                tag.push_str(&format!(" ({outcome})"));
            }
            spans.push(Span::raw(format!("{tag}: ")));
            spans.push(Span::raw(ev.what.clone()));
            Line::from(spans).style(violation())
        }
        None => {
            spans.push(Span::raw(ev.what.clone()));
            Line::from(spans)
        }
    }
}

fn draw_feed(frame: &mut Frame<'_>, app: &App, area: Rect, compact: bool) {
    let focused = app.focus == Focus::Feed;
    let mut title = match app.selected_session() {
        Some(s) => format!(" Events of {} {} ", s.agent, s.short_id()),
        None => " Events ".to_owned(),
    };
    if !compact || app.kind_filter != super::state::KindFilter::All {
        title.push_str(&format!("[kind: {}] ", app.kind_filter.label()));
    }
    if !app.text_filter.is_empty() || matches!(app.mode, Mode::Filter) {
        title.push_str(&format!("[/{}] ", app.text_filter));
    }
    if app.show_system {
        title.push_str("[+system reads] ");
    }
    let mut block = pane(title, focused);
    if app.is_paused() {
        let newer = app.newer_while_paused();
        let mut text = " PAUSED ".to_owned();
        if newer > 0 {
            text = format!(" PAUSED, {newer} newer ");
        }
        block = block.title(
            Line::from(Span::styled(
                text,
                Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            ))
            .right_aligned(),
        );
    } else if app.feed_scroll > 0 {
        block = block.title(Line::from(format!(" {} back ", app.feed_scroll)).right_aligned());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let events = app.feed(inner.height as usize);
    if events.is_empty() {
        let text = if app.feed_len() == 0 {
            "no events yet"
        } else {
            "no events match the filter"
        };
        frame.render_widget(
            Paragraph::new(Span::styled(
                text,
                Style::default().add_modifier(Modifier::DIM),
            )),
            inner,
        );
        return;
    }
    let lines: Vec<Line<'_>> = events
        .into_iter()
        .map(|ev| feed_line(ev, compact))
        .collect();
    frame.render_widget(Paragraph::new(Text::from(lines)), inner);
}

/// The destinations view (`d`): where the session's sockets went, most bytes out
/// first, with their connects and sends (from its connect, send and flow events).
fn draw_dests(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let focused = app.focus == Focus::Feed;
    let title = match app.selected_session() {
        Some(s) => format!(" Destinations of {} {} ", s.agent, s.short_id()),
        None => " Destinations ".to_owned(),
    };
    let (dests, omitted) = app.destinations();
    let mut block = pane(title, focused);
    if omitted > 0 {
        block = block.title(Line::from(format!(" {omitted} more not shown ")).right_aligned());
    }
    if dests.is_empty() {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Span::styled(
                "no connects, sends or flows yet",
                Style::default().add_modifier(Modifier::DIM),
            )),
            inner,
        );
        return;
    }
    let header = Row::new(
        ["DESTINATION", "NAME", "CONN", "SEND", "OUT", "IN"]
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                if i >= 2 {
                    right(h.to_owned())
                } else {
                    Cell::from(h)
                }
            }),
    )
    .style(bold());
    let rows = dests.iter().map(|d| {
        Row::new(vec![
            Cell::from(d.dest.clone()),
            Cell::from(d.host.clone().unwrap_or_else(|| "-".to_owned())),
            right(d.connects.to_string()),
            right(d.sends.to_string()),
            right(bytes(d.out)),
            right(bytes(d.inb)),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Fill(3),
            Constraint::Fill(2),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(10),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}

fn status_spans(app: &App, compact: bool) -> Vec<Span<'static>> {
    let sep = || Span::raw(" │ ");
    let mut spans = vec![Span::raw(" ")];
    if let Some(why) = &app.disconnected {
        spans.push(Span::styled(
            format!("daemon unreachable: {why} (retrying)"),
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
        spans.push(sep());
    }
    let Some(st) = &app.status else {
        spans.push(Span::raw("waiting for the daemon's status"));
        return spans;
    };
    spans.push(Span::styled(format!("{:.0}", st.events_per_second), bold()));
    spans.push(Span::raw(" ev/s"));
    spans.push(sep());
    let lost: Vec<String> = st
        .lost
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k}:{n}"))
        .collect();
    if lost.is_empty() {
        spans.push(Span::raw("lost 0"));
    } else {
        spans.push(Span::styled(format!("lost {}", lost.join(" ")), bold()));
    }
    if compact {
        if app.missed > 0 {
            spans.push(sep());
            spans.push(Span::styled(format!("missed {}", app.missed), bold()));
        }
        return spans;
    }
    spans.push(sep());
    let cpu = match st.cpu_percent {
        Some(p) => format!("cpu {p:.1}%"),
        None => format!("cpu {:.1}s", st.cpu_seconds),
    };
    spans.push(Span::raw(format!(
        "daemon {cpu} mem {}",
        bytes(st.rss_bytes)
    )));
    spans.push(sep());
    spans.push(Span::raw(format!(
        "policy {} mode {}",
        st.policy.as_deref().unwrap_or("none"),
        st.mode.as_deref().unwrap_or("none")
    )));
    if app.missed > 0 {
        spans.push(sep());
        spans.push(Span::styled(format!("missed {}", app.missed), bold()));
    }
    if app.skipped > 0 {
        spans.push(sep());
        spans.push(Span::raw(format!("too fast: {} not shown", app.skipped)));
    }
    spans
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect, compact: bool) {
    let line = Line::from(status_spans(app, compact));
    frame.render_widget(
        Paragraph::new(line).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

fn draw_hints(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let line = if matches!(app.mode, Mode::Filter) {
        Line::from(vec![
            Span::styled(" filter /", bold()),
            Span::raw(app.text_filter.clone()),
            Span::styled("█", Style::default().add_modifier(Modifier::SLOW_BLINK)),
            Span::raw("   Enter keep · Esc clear"),
        ])
    } else if let Some(m) = &app.message {
        let style = if m.error { bold() } else { Style::default() };
        Line::from(Span::styled(format!(" {}", m.text), style))
    } else {
        const KEYS: [(&str, &str); 9] = [
            ("q", "quit"),
            ("?", "help"),
            ("Tab", "pane"),
            ("↑↓", "move"),
            ("/", "filter"),
            ("f", "kind"),
            ("space", "pause"),
            ("K", "kill session"),
            ("x", "kill process"),
        ];
        let mut spans = vec![Span::raw(" ")];
        for (i, (key, what)) in KEYS.iter().enumerate() {
            let gap = if i + 1 < KEYS.len() { "  " } else { "" };
            spans.push(Span::styled(*key, bold()));
            spans.push(Span::raw(format!(" {what}{gap}")));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}
