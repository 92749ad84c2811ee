//! Subscribers of the event stream: each gets a bounded queue, and what it missed
//! while its queue was full is told to it as one `missed` notice, so a slow reader
//! never stalls the daemon.

use std::sync::Arc;

use guard_common::line::{EventDetail, EventLine};
use tokio::sync::mpsc::{self, error::TrySendError};

/// What a subscriber wants to see.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    pub kinds: Vec<String>,
}

impl Filter {
    /// Whether an event of `kind` in `session` passes. Lost-event reports, which
    /// belong to no session, reach every session's subscribers.
    pub fn wants(&self, session: Option<&str>, kind: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && match (&self.session, session) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => kind == "lost",
            }
    }
}

struct Subscriber {
    filter: Filter,
    events: mpsc::Sender<Arc<str>>,
    missed: u64,
}

#[derive(Default)]
pub struct Subscribers(Vec<Subscriber>);

impl Subscribers {
    pub fn add(&mut self, filter: Filter, events: mpsc::Sender<Arc<str>>) {
        self.0.push(Subscriber {
            filter,
            events,
            missed: 0,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Offers one event line to every subscriber that wants it; subscribers that
    /// left are dropped.
    pub fn offer(&mut self, line: &Arc<str>, session: Option<&str>, kind: &str) {
        self.0.retain_mut(|sub| {
            if !sub.filter.wants(session, kind) {
                return true;
            }
            if sub.missed > 0 {
                let notice = serde_json::to_string(&EventLine {
                    detail: EventDetail::Missed { count: sub.missed },
                    ..EventLine::default()
                })
                .unwrap_or_default();
                match sub.events.try_send(Arc::from(notice)) {
                    Ok(()) => sub.missed = 0,
                    Err(TrySendError::Full(_)) => {
                        sub.missed += 1;
                        return true;
                    }
                    Err(TrySendError::Closed(_)) => return false,
                }
            }
            match sub.events.try_send(Arc::clone(line)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    sub.missed += 1;
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn filters_by_session_and_kind() {
        let f = Filter {
            session: Some("a".into()),
            kinds: vec!["open".into()],
        };
        assert!(f.wants(Some("a"), "open"));
        assert!(!f.wants(Some("b"), "open"));
        assert!(!f.wants(Some("a"), "exec"));
        assert!(Filter::default().wants(None, "lost"));
    }

    #[test]
    fn a_slow_subscriber_is_told_what_it_missed() {
        let mut subs = Subscribers::default();
        let (tx, mut rx) = mpsc::channel(2);
        subs.add(Filter::default(), tx);
        let line: Arc<str> = Arc::from(r#"{"kind":"fork","child_pid":1}"#);
        for _ in 0..5 {
            subs.offer(&line, Some("s"), "fork");
        }
        // Two fit; three were missed.
        assert_eq!(rx.try_recv().as_deref().ok(), Some(&*line));
        assert_eq!(rx.try_recv().as_deref().ok(), Some(&*line));
        assert!(rx.try_recv().is_err());
        subs.offer(&line, Some("s"), "fork");
        let notice: EventLine =
            serde_json::from_str(&rx.try_recv().expect("notice")).expect("a protocol line");
        assert_eq!(notice.detail, EventDetail::Missed { count: 3 });
        assert_eq!(rx.try_recv().as_deref().ok(), Some(&*line));
    }

    #[test]
    fn a_subscriber_that_left_is_dropped() {
        let mut subs = Subscribers::default();
        let (tx, rx) = mpsc::channel(2);
        subs.add(Filter::default(), tx);
        drop(rx);
        subs.offer(&Arc::from("{}"), None, "lost");
        assert!(subs.is_empty());
    }
}
