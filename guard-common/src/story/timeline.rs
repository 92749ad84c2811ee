//! The session's timeline chart: the declared calls as bars from their start to
//! their end, guard's decisions as marks. One description for every page that draws
//! it: the Markdown report as Mermaid (GitHub renders it in job summaries), the HTML
//! report and the fleet's session page as SVG ([`Timeline::svg`], feature `chart`:
//! drawn by plotters, no script, the text escaped).

extern crate alloc;

use alloc::{borrow::ToOwned, format, string::String, vec::Vec};

use super::parse;
use crate::report::Report;

/// Bars and marks in the chart at most, each kind.
pub const CHART_MAX: usize = 50;

/// Characters of a name the chart shows at most (then `…`).
pub const NAME_MAX: usize = 40;

/// A declared call: what it ran (its command, else its tool), from its start to its
/// end (the session's when it declared none), in ms since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    pub name: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A decision of guard's: its rule and outcome, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub name: String,
    pub at_ms: i64,
}

/// The chart's content: the first [`CHART_MAX`] calls and decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
}

/// `s` on one line, cut at [`NAME_MAX`] characters.
fn short(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let s = s.trim();
    match s.char_indices().nth(NAME_MAX) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None if s.is_empty() => "-".to_owned(),
        None => s.to_owned(),
    }
}

/// The timeline of `r`.
pub fn timeline(r: &Report) -> Timeline {
    let ms = |ts: &str| parse(ts).map(|t| t.timestamp_millis());
    let session_end = r.ended.as_deref().and_then(ms);
    let mut calls: Vec<_> = r.calls.items.iter().collect();
    calls.sort_by_key(|c| parse(&c.started));
    let bars = calls
        .into_iter()
        .filter_map(|c| {
            let start_ms = ms(&c.started)?;
            let end_ms = c
                .ended
                .as_deref()
                .and_then(ms)
                .or(session_end)
                .unwrap_or(start_ms)
                .max(start_ms + 1);
            let name = short(c.command.as_deref().unwrap_or(&c.tool));
            Some(Bar {
                name,
                start_ms,
                end_ms,
            })
        })
        .take(CHART_MAX)
        .collect();
    let marks = r
        .violations
        .items
        .iter()
        .filter_map(|v| {
            Some(Mark {
                name: short(&format!("{} {}", v.rule, v.outcome)),
                at_ms: ms(&v.ts)?,
            })
        })
        .take(CHART_MAX)
        .collect();
    Timeline { bars, marks }
}

impl Timeline {
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty() && self.marks.is_empty()
    }

    /// The first and last instants it shows.
    pub fn span(&self) -> Option<(i64, i64)> {
        let starts = self.bars.iter().map(|b| b.start_ms);
        let ends = self.bars.iter().map(|b| b.end_ms);
        let marks = self.marks.iter().map(|m| m.at_ms);
        let first = starts.clone().chain(marks.clone()).min()?;
        let last = ends.chain(marks).max()?;
        Some((first, last.max(first + 1)))
    }
}

#[cfg(feature = "chart")]
mod svg {
    use plotters::{
        prelude::*,
        style::text_anchor::{HPos, Pos, VPos},
    };

    use super::alloc::{
        format,
        string::{String, ToString},
    };

    use super::Timeline;

    const W: u32 = 720;
    /// Height of a row (a call, or guard's decisions).
    const ROW: u32 = 22;
    /// Room for the time axis.
    const AXIS: u32 = 36;
    const BLUE: RGBColor = RGBColor(0x09, 0x69, 0xda);
    const RED: RGBColor = RGBColor(0xcf, 0x22, 0x2e);
    const INK: RGBColor = RGBColor(0x24, 0x29, 0x2f);

    impl Timeline {
        /// The chart as an SVG element (its width follows the page's), or none
        /// when there is nothing to draw or plotters fails. Row 0 holds guard's
        /// decisions (red marks, their rule and outcome beside the first ones), each
        /// row after it a call (a blue bar, its command after it). The time axis
        /// reads the UTC clock.
        pub fn svg(&self) -> Option<String> {
            let (first, last) = self.span()?;
            let rows = self.bars.len() + 1;
            let h = AXIS + ROW * u32::try_from(rows).ok()?;
            let mut out = String::new();
            {
                let root = SVGBackend::with_string(&mut out, (W, h)).into_drawing_area();
                root.fill(&WHITE).ok()?;
                let pad = ((last - first) / 50).max(1);
                // Room at the sides for the axis's first and last times.
                let mut chart = ChartBuilder::on(&root)
                    .margin(6)
                    .margin_left(30)
                    .margin_right(30)
                    .x_label_area_size(AXIS - 8)
                    .build_cartesian_2d(first - pad..last + pad, 0.0..rows as f64)
                    .ok()?;
                chart
                    .configure_mesh()
                    .disable_y_mesh()
                    .disable_y_axis()
                    .x_labels(6)
                    .x_label_formatter(&|ms| {
                        chrono::DateTime::from_timestamp_millis(*ms)
                            .map(|t| t.format("%H:%M:%S").to_string())
                            .unwrap_or_default()
                    })
                    .label_style(("sans-serif", 13).into_font().color(&INK))
                    .draw()
                    .ok()?;
                let font = ("sans-serif", 13).into_font().color(&INK);
                // Text that starts past the middle ends where it is placed instead,
                // so that it stays inside the chart.
                let mid = first + (last - first) / 2;
                let placed = |at: i64| {
                    let h = if at > mid { HPos::Right } else { HPos::Left };
                    font.pos(Pos::new(h, VPos::Top))
                };
                // Row r's top is at `rows - r` (plotters' y grows upwards): its text in
                // the upper half, its bar or marks in the lower.
                let top = |r: usize| (rows - r) as f64;
                for (i, bar) in self.bars.iter().enumerate() {
                    let y = top(i + 1);
                    chart
                        .draw_series(core::iter::once(Rectangle::new(
                            [(bar.start_ms, y - 0.58), (bar.end_ms, y - 0.92)],
                            BLUE.filled(),
                        )))
                        .ok()?;
                    chart
                        .draw_series(core::iter::once({
                            let at = if bar.start_ms > mid {
                                bar.end_ms
                            } else {
                                bar.start_ms
                            };
                            Text::new(bar.name.clone(), (at, y - 0.04), placed(at))
                        }))
                        .ok()?;
                }
                let y = top(0) - 0.75;
                chart
                    .draw_series(
                        self.marks
                            .iter()
                            .map(|m| TriangleMarker::new((m.at_ms, y), 6, RED.filled())),
                    )
                    .ok()?;
                // The first decision's words; the story under the chart has all.
                if let Some(m) = self.marks.first() {
                    chart
                        .draw_series(core::iter::once(Text::new(
                            m.name.clone(),
                            (m.at_ms, top(0) - 0.04),
                            placed(m.at_ms),
                        )))
                        .ok()?;
                }
                root.present().ok()?;
            }
            Some(out.replacen(
                &format!("width=\"{W}\" height=\"{h}\" "),
                "class=\"timeline\" role=\"img\" aria-label=\"timeline of the session\" ",
                1,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Bounded, Call, Violation};

    fn report() -> Report {
        let mut r = Report {
            ended: Some("2026-11-22T08:00:09Z".to_owned()),
            ..Report::default()
        };
        r.calls = Bounded {
            items: alloc::vec![
                Call {
                    id: "c1".to_owned(),
                    tool: "Read".to_owned(),
                    started: "2026-11-22T08:00:05Z".to_owned(),
                    ..Default::default()
                },
                Call {
                    id: "c0".to_owned(),
                    tool: "Bash".to_owned(),
                    command: Some(
                        "npm install <script>alert(1)</script> && make all the things".to_owned()
                    ),
                    started: "2026-11-22T08:00:01Z".to_owned(),
                    ended: Some("2026-11-22T08:00:04Z".to_owned()),
                    ..Default::default()
                },
            ],
            omitted: 0,
        };
        r.violations = Bounded {
            items: alloc::vec![Violation {
                ts: "2026-11-22T08:00:03Z".to_owned(),
                pid: 7,
                comm: "cat".to_owned(),
                what: "open /home/a/.ssh/id_rsa".to_owned(),
                path: None,
                rule: "credentials-read".to_owned(),
                action: "kill".to_owned(),
                outcome: "killed".to_owned(),
                alert: false,
            }],
            omitted: 0,
        };
        r
    }

    #[test]
    fn calls_are_bars_to_their_end_and_decisions_are_marks() {
        let t = timeline(&report());
        let at = |s: &str| parse(s).expect("time").timestamp_millis();
        // In the order they started.
        assert_eq!(
            t.bars,
            [
                Bar {
                    name: "npm install <script>alert(1)</script> &&…".to_owned(),
                    start_ms: at("2026-11-22T08:00:01Z"),
                    end_ms: at("2026-11-22T08:00:04Z"),
                },
                // No end declared: the session's.
                Bar {
                    name: "Read".to_owned(),
                    start_ms: at("2026-11-22T08:00:05Z"),
                    end_ms: at("2026-11-22T08:00:09Z"),
                },
            ]
        );
        assert_eq!(
            t.marks,
            [Mark {
                name: "credentials-read killed".to_owned(),
                at_ms: at("2026-11-22T08:00:03Z"),
            }]
        );
        assert_eq!(
            t.span(),
            Some((at("2026-11-22T08:00:01Z"), at("2026-11-22T08:00:09Z")))
        );
        assert!(timeline(&Report::default()).is_empty());
    }

    #[cfg(feature = "chart")]
    #[test]
    fn the_svg_draws_every_bar_and_mark_with_its_text_escaped() {
        let svg = timeline(&report()).svg().expect("a chart");
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.contains("class=\"timeline\""), "{svg}");
        // Two bars (and the background), the mark, the command as text, not markup.
        assert_eq!(svg.matches("fill=\"#0969DA\"").count(), 2, "{svg}");
        assert!(svg.contains("credentials-read killed"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("\n08:00:0"), "the clock on the axis: {svg}");
        assert_eq!(Timeline::default().svg(), None);
    }
}
