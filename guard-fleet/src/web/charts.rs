//! The dashboard's charts: SVG drawn on the server by plotters, placed inline in the
//! pages (no script, no fonts: the browser renders the text). plotters escapes the
//! text it writes, so a rule or repository name cannot become markup.

use chrono::DateTime;
use plotters::{coord::Shift, prelude::*};

use super::fmt;
use crate::store::read::{Count, Day, SessionDetail};

/// A chart that could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart")]
pub struct ChartError(#[source] DrawingAreaErrorKind<std::io::Error>);

impl From<DrawingAreaErrorKind<std::io::Error>> for ChartError {
    fn from(e: DrawingAreaErrorKind<std::io::Error>) -> Self {
        Self(e)
    }
}

// Drawn at 480 wide and scaled by the page: on a 390 px phone the text is still
// ~9 px (at 640 it was 6 px), on a desktop panel ~16 px.
const W: u32 = 480;
const H: u32 = 240;
const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(0x09, 0x69, 0xda);
const GREEN: RGBColor = RGBColor(0x1a, 0x7f, 0x37);
const PURPLE: RGBColor = RGBColor(0x82, 0x50, 0xdf);
const GREY: RGBColor = RGBColor(0x8c, 0x95, 0x9f);
const RED: RGBColor = RGBColor(0xcf, 0x22, 0x2e);
const ORANGE: RGBColor = RGBColor(0xbc, 0x4c, 0x00);
const INK: RGBColor = RGBColor(0x24, 0x29, 0x2f);

fn svg(
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ChartError>,
) -> Result<String, ChartError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    // Scale with the page: the viewBox stays, the fixed size goes.
    Ok(out.replacen(
        &format!("width=\"{W}\" height=\"{H}\" "),
        "class=\"chart\" ",
        1,
    ))
}

fn label_style() -> TextStyle<'static> {
    // plotters writes 0.8 of it: ~12 of the 480 units.
    (FONT, 15).into_font().color(&INK)
}

/// The binary unit bytes up to `max` read best in: its size and name. Charts draw
/// bytes in it, so the axis's round numbers are round in it (100 MiB, not 95.4).
fn byte_unit(max: i64) -> (f64, &'static str) {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut size = 1.0;
    let mut unit = 0;
    while unit + 1 < UNITS.len() && max as f64 >= size * 1024.0 {
        size *= 1024.0;
        unit += 1;
    }
    (size, UNITS[unit])
}

/// An axis label in `unit`: `200 MiB`, `1.5 GiB`.
fn unit_label(v: f64, unit: &str) -> String {
    let text = format!("{v:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// Sessions (bars, left axis) and distinct developers (line, right axis: its own
/// scale, so a team of five reads beside five hundred sessions) per day. The
/// legend is the page's, under the chart.
pub fn sessions_per_day(days: &[Day]) -> Result<String, ChartError> {
    let n = days.len().max(1) as u32;
    let max = days.iter().map(|d| d.sessions).max().unwrap_or(0).max(1);
    let max_dev = days.iter().map(|d| d.developers).max().unwrap_or(0).max(1);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Sessions and developers per day", (FONT, 17))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(40)
            .right_y_label_area_size(36)
            .build_cartesian_2d((0..n).into_segmented(), 0..max + max / 8 + 1)?
            // The segmented axis has a segment past the last day: the line's
            // axis spans the same.
            .set_secondary_coord(0.0..f64::from(n + 1), 0..max_dev + max_dev / 8 + 1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => days
                    .get(*i as usize)
                    .map(|d| fmt::day(d.day_ms))
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .y_desc("sessions")
            .label_style(label_style())
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("developers")
            .label_style(label_style().color(&GREEN))
            .draw()?;
        chart.draw_series(days.iter().enumerate().map(|(i, d)| {
            let i = i as u32;
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0),
                    (SegmentValue::Exact(i + 1), d.sessions),
                ],
                BLUE.mix(0.7).filled(),
            );
            bar.set_margin(0, 0, 2, 2);
            bar
        }))?;
        chart.draw_secondary_series(LineSeries::new(
            days.iter()
                .enumerate()
                .map(|(i, d)| (i as f64 + 0.5, d.developers)),
            GREEN.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Bytes sent to model APIs and to everything else, per day (stacked bars), in
/// the binary unit that reads best (the axis at round numbers of it). The legend
/// is the page's.
pub fn bytes_per_day(days: &[Day]) -> Result<String, ChartError> {
    let n = days.len().max(1) as u32;
    let max = days
        .iter()
        .map(|d| d.model_bytes_out + d.other_bytes_out)
        .max()
        .unwrap_or(0)
        .max(1);
    let (size, unit) = byte_unit(max);
    let top = max as f64 / size * 1.12;
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Bytes sent: model APIs and everything else", (FONT, 17))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => days
                    .get(*i as usize)
                    .map(|d| fmt::day(d.day_ms))
                    .unwrap_or_default(),
                SegmentValue::Last => String::new(),
            })
            .y_label_formatter(&|v| unit_label(*v, unit))
            .max_light_lines(1)
            .label_style(label_style())
            .draw()?;
        let bar = |i: usize, lo: i64, hi: i64, color: RGBColor| {
            let i = i as u32;
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), lo as f64 / size),
                    (SegmentValue::Exact(i + 1), hi as f64 / size),
                ],
                color.filled(),
            )
        };
        chart.draw_series(
            days.iter()
                .enumerate()
                .map(|(i, d)| bar(i, 0, d.model_bytes_out, PURPLE)),
        )?;
        chart.draw_series(days.iter().enumerate().map(|(i, d)| {
            bar(
                i,
                d.model_bytes_out,
                d.model_bytes_out + d.other_bytes_out,
                GREY,
            )
        }))?;
        Ok(())
    })
}

/// The colour of a violation's outcome: stopped red, let through orange, logged grey.
fn outcome_color(outcome: &str) -> RGBColor {
    match outcome {
        "killed" | "denied" => RED,
        "alerted" | "not_denied" | "failed" | "gone" => ORANGE,
        _ => GREY,
    }
}

/// Horizontal bars of `counts` (violations by rule, or by outcome).
pub fn bars(title: &str, counts: &[Count], by_outcome: bool) -> Result<String, ChartError> {
    let n = counts.len().max(1) as u32;
    let max = counts.iter().map(|c| c.count).max().unwrap_or(0).max(1);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 17))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(150)
            .build_cartesian_2d(0..max + max / 8 + 1, (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(counts.len().max(1))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => counts
                    .get(*i as usize)
                    .map(|c| {
                        let k: String = c.key.chars().take(24).collect();
                        if k.len() < c.key.len() {
                            format!("{k}…")
                        } else {
                            k
                        }
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .label_style(label_style())
            .draw()?;
        chart.draw_series(counts.iter().enumerate().map(|(i, c)| {
            let i = i as u32;
            let color = if by_outcome {
                outcome_color(&c.key)
            } else {
                RED
            };
            Rectangle::new(
                [
                    (0, SegmentValue::Exact(i)),
                    (c.count, SegmentValue::Exact(i + 1)),
                ],
                color.mix(0.8).filled(),
            )
        }))?;
        Ok(())
    })
}

fn rfc3339_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A session over its time: commands and violations per slice (bars, left axis)
/// and bytes sent so far (line, right axis; from the flow records in the index).
pub fn timeline(d: &SessionDetail) -> Result<String, ChartError> {
    const SLICES: usize = 60;
    let start = d.session.started_ms;
    let commands: Vec<i64> = d
        .report
        .commands
        .items
        .iter()
        .filter_map(|c| rfc3339_ms(&c.ts))
        .collect();
    let violations: Vec<i64> = d
        .report
        .violations
        .items
        .iter()
        .filter_map(|v| rfc3339_ms(&v.ts))
        .collect();
    // Bytes: each flow's growth since its previous record, at that record's time.
    let mut last: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut sent: Vec<(i64, i64)> = Vec::new();
    for f in &d.flows {
        let prev = last.insert(f.flow_id.as_str(), f.bytes_out).unwrap_or(0);
        sent.push((f.ts_ms, (f.bytes_out - prev).max(0)));
    }
    let latest = commands
        .iter()
        .chain(&violations)
        .copied()
        .chain(sent.iter().map(|s| s.0))
        .chain(d.session.ended_ms)
        .chain([start + d.session.duration_ms])
        .max()
        .unwrap_or(start);
    let span = (latest - start).max(60_000);
    let slice_ms = span as f64 / SLICES as f64;
    let slot = |t: i64| (((t - start).max(0) as f64 / slice_ms) as usize).min(SLICES - 1);
    let mut per_slice = [[0i64; 2]; SLICES];
    for t in &commands {
        per_slice[slot(*t)][0] += 1;
    }
    for t in &violations {
        per_slice[slot(*t)][1] += 1;
    }
    sent.sort_unstable();
    let mut total = 0;
    let mut cumulative = vec![(0.0, 0.0)];
    let minutes = span as f64 / 60_000.0;
    for (t, b) in &sent {
        total += b;
        cumulative.push(((t - start).max(0) as f64 / 60_000.0, total as f64));
    }
    // The summary's count is exact; the index may hold few flow records or none
    // (not exported, or past retention): what they miss is drawn at the session's
    // last report, so the line ends at what the session sent.
    let summary_total = d.session.bytes_out.max(total);
    let last_at = (d.session.updated_ms.min(latest) - start).max(0) as f64 / 60_000.0;
    if summary_total > total {
        let at = last_at.max(cumulative.last().map_or(0.0, |c| c.0));
        cumulative.push((at, total as f64));
        cumulative.push((at, summary_total as f64));
    }
    let (size, unit) = byte_unit(summary_total.max(1));
    for c in &mut cumulative {
        c.1 /= size;
    }
    cumulative.push((minutes, summary_total as f64 / size));
    let top = (summary_total.max(1) as f64 / size) * 1.12;
    let max_count = per_slice
        .iter()
        .map(|s| s[0].max(s[1]))
        .max()
        .unwrap_or(0)
        .max(1);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption("Timeline (minutes since the start)", (FONT, 17))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(36)
            .right_y_label_area_size(64)
            .build_cartesian_2d(0.0..minutes, 0..max_count + 1)?
            .set_secondary_coord(0.0..minutes, 0.0..top);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(6)
            .label_style(label_style())
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_labels(5)
            .y_label_formatter(&|b| unit_label(*b, unit))
            .label_style(label_style().color(&PURPLE))
            .draw()?;
        let width = minutes / SLICES as f64;
        let bar = |i: usize, n: i64, color: RGBColor, lo: f64, hi: f64| {
            let x = i as f64 * width;
            Rectangle::new(
                [(x + width * lo, 0), (x + width * hi, n)],
                color.mix(0.8).filled(),
            )
        };
        chart.draw_series(
            per_slice
                .iter()
                .enumerate()
                .map(|(i, s)| bar(i, s[0], BLUE, 0.1, 0.9)),
        )?;
        chart.draw_series(
            per_slice
                .iter()
                .enumerate()
                .map(|(i, s)| bar(i, s[1], RED, 0.3, 0.7)),
        )?;
        chart.draw_secondary_series(LineSeries::new(
            cumulative.iter().copied(),
            PURPLE.stroke_width(2),
        ))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_inside_the_svg() {
        let counts = [
            Count {
                key: "<script>alert(1)</script>".into(),
                count: 3,
            },
            Count {
                key: "x\" onload=\"alert(2)".into(),
                count: 1,
            },
        ];
        let svg = bars("Violations by rule", &counts, false).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.contains("viewBox=\"0 0 480 240\""));
        assert!(!svg.contains("<script"), "escaped");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("\" onload=\""));
        assert!(
            !svg.contains("style="),
            "no inline style: CSP style-src 'self' holds"
        );
    }

    #[test]
    fn byte_axes_are_round_in_their_unit() {
        assert_eq!(byte_unit(500 << 20), (f64::from(1 << 20), "MiB"));
        assert_eq!(byte_unit(900), (1.0, "B"));
        assert_eq!(unit_label(100.0, "MiB"), "100 MiB");
        assert_eq!(unit_label(1.5, "GiB"), "1.5 GiB");
        let days: Vec<Day> = (0..7)
            .map(|i| Day {
                day_ms: i * 86_400_000,
                model_bytes_out: 400 << 20,
                other_bytes_out: 100 << 20,
                ..Day::default()
            })
            .collect();
        let svg = bytes_per_day(&days).expect("svg");
        assert!(svg.contains("\n100 MiB\n"), "round ticks: {svg}");
        assert!(!svg.contains("476.8"), "{svg}");
    }

    #[test]
    fn empty_data_still_draws() {
        assert!(sessions_per_day(&[]).is_ok());
        assert!(bytes_per_day(&[Day::default()]).is_ok());
        assert!(bars("none", &[], true).is_ok());
    }
}
