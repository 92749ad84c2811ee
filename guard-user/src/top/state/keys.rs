//! `guard top`'s keys: what each does in each mode, and the kill it asks to confirm.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{Action, App, Focus, KillTarget, KindFilter, Mode, REPORT_PAGE, subtree};

impl App {
    /// Handles one key; returns what the loop must do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c')) {
            return Some(Action::Quit);
        }
        match self.mode.clone() {
            Mode::Help => {
                // Any key closes the help; q still quits.
                self.mode = Mode::Normal;
                if key.code == KeyCode::Char('q') {
                    return Some(Action::Quit);
                }
                None
            }
            Mode::Confirm { target, .. } => {
                match key.code {
                    KeyCode::Char('y' | 'Y') => {
                        self.mode = Mode::Normal;
                        return Some(Action::Kill(target));
                    }
                    KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => {
                        self.mode = Mode::Normal;
                        self.say("kill cancelled".to_owned(), false);
                    }
                    _ => {}
                }
                None
            }
            Mode::Filter => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.text_filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.text_filter.pop();
                    }
                    KeyCode::Char('u') if ctrl => self.text_filter.clear(),
                    KeyCode::Char(c) if !ctrl => self.text_filter.push(c),
                    _ => {}
                }
                self.feed_scroll = 0;
                None
            }
            Mode::Report { .. } => {
                self.report_key(key.code);
                None
            }
            Mode::Normal => self.normal_key(key),
        }
    }

    /// Keys while a report is shown: scroll it, or close it.
    fn report_key(&mut self, code: KeyCode) {
        let Mode::Report { lines, top, .. } = &mut self.mode else {
            return;
        };
        let last = lines.len().saturating_sub(1);
        *top = match code {
            KeyCode::Up | KeyCode::Char('k') => top.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => (*top + 1).min(last),
            KeyCode::PageUp => top.saturating_sub(REPORT_PAGE),
            KeyCode::PageDown | KeyCode::Char(' ') => (*top + REPORT_PAGE).min(last),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => last,
            KeyCode::Esc | KeyCode::Char('q' | 'r') => {
                self.mode = Mode::Normal;
                return;
            }
            _ => *top,
        };
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Char('q') => return Some(Action::Quit),
            KeyCode::Char('?') | KeyCode::F(1) => self.mode = Mode::Help,
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.prev(),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-10),
            KeyCode::PageDown => self.move_by(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX / 2),
            KeyCode::Enter if self.focus == Focus::Sessions => self.focus = Focus::Tree,
            KeyCode::Char('/') => {
                self.mode = Mode::Filter;
            }
            KeyCode::Char('f') => {
                self.kind_filter = self.kind_filter.step(1);
                self.feed_scroll = 0;
            }
            KeyCode::Char('F') => {
                self.kind_filter = self.kind_filter.step(-1);
                self.feed_scroll = 0;
            }
            KeyCode::Esc => {
                self.text_filter.clear();
                self.kind_filter = KindFilter::All;
                self.feed_scroll = 0;
            }
            KeyCode::Char(' ' | 'p') => self.toggle_pause(),
            KeyCode::Char('d') => self.dests_view = !self.dests_view,
            KeyCode::Char('s') => {
                self.show_system = !self.show_system;
                self.feed_scroll = 0;
            }
            KeyCode::Char('K') => self.ask_kill_session(),
            KeyCode::Char('r') => match self.selected_session() {
                Some(s) => return Some(Action::Report(s.id.clone())),
                None => self.say("no session selected".to_owned(), true),
            },
            KeyCode::Char('x') => {
                if self.focus == Focus::Tree {
                    self.ask_kill_process();
                } else {
                    self.say(
                        "x kills the process selected in the tree: Tab to the tree first"
                            .to_owned(),
                        true,
                    );
                }
            }
            _ => {}
        }
        None
    }

    fn move_by(&mut self, by: isize) {
        match self.focus {
            Focus::Sessions => {
                if self.sessions.is_empty() {
                    return;
                }
                let at = self.selected_index().unwrap_or(0);
                let to = at.saturating_add_signed(by).min(self.sessions.len() - 1);
                let id = self.sessions.get(to).map(|s| s.id.clone());
                self.select_session(id);
            }
            Focus::Tree => {
                let rows = self.tree();
                if rows.is_empty() {
                    return;
                }
                let at = self
                    .tree_pid
                    .and_then(|pid| rows.iter().position(|r| r.pid == pid))
                    .unwrap_or(0);
                let to = at.saturating_add_signed(by).min(rows.len() - 1);
                self.tree_pid = rows.get(to).map(|r| r.pid);
            }
            Focus::Feed => {
                // Up scrolls back in time; scrolling pauses the feed so it holds still.
                if by < 0 && self.paused.is_none() {
                    self.freeze();
                }
                let back = self.feed_scroll as isize - by;
                let max = self.feed_len().saturating_sub(1) as isize;
                self.feed_scroll = back.clamp(0, max.max(0)) as usize;
            }
        }
    }

    fn ask_kill_session(&mut self) {
        let Some(s) = self.selected_session() else {
            self.say("no session selected".to_owned(), true);
            return;
        };
        if !s.running {
            let text = format!("session {} has already ended", s.short_id());
            self.say(text, true);
            return;
        }
        let n = s.processes.len();
        let question = format!(
            "Kill session {} ({}, root pid {}, {} process{})?",
            s.short_id(),
            s.agent,
            s.root_pid,
            n,
            if n == 1 { "" } else { "es" }
        );
        self.mode = Mode::Confirm {
            target: KillTarget::Session(s.id.clone()),
            question,
        };
    }

    fn ask_kill_process(&mut self) {
        let (Some(s), Some(pid)) = (self.selected_session(), self.tree_pid) else {
            self.say("no process selected".to_owned(), true);
            return;
        };
        let comm = s
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.comm.clone())
            .unwrap_or_default();
        let below = subtree(s, pid).len().saturating_sub(1);
        let question = match below {
            0 => format!("Kill process {pid} ({comm})?"),
            1 => format!("Kill process {pid} ({comm}) and its 1 descendant?"),
            n => format!("Kill process {pid} ({comm}) and its {n} descendants?"),
        };
        self.mode = Mode::Confirm {
            target: KillTarget::Pid(pid),
            question,
        };
    }
}
