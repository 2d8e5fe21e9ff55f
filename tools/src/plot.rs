//! `show --plot FILE`: one SVG an operator can open in a browser: the
//! sampled latency of allocator calls as a CCDF per operation and scope
//! (the fraction of calls at least as slow as x, log-log, so tails read
//! straight off it), and how long NORECLAIM scopes were held, per thread.
//! Drawn with plotters' SVG backend; text is left to the viewer's fonts.

use plotters::prelude::*;

use crate::segment::{Hist, Snapshot};
use memscope_abi::{names, CONTEXTS, OPS};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 1100;

/// One drawn line: its label and its points.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

/// The CCDF of a histogram as steps: over each non-empty bucket, the
/// fraction of samples at least as long as its lower bound (ns, at least
/// 1), held to the bucket's upper bound (capped by the maximum), where it
/// drops to the next bucket's. Conservative: a bucket's samples are drawn
/// at its slow end.
fn ccdf(h: &Hist) -> Vec<(f64, f64)> {
    let n = h.samples();
    if n == 0 {
        return Vec::new();
    }
    let max = h.max_ns.max(1) as f64;
    let mut before = 0u64;
    let mut points = Vec::new();
    for (i, &count) in h.buckets.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let p = n.saturating_sub(before) as f64 / n as f64;
        let lo = (h.lower(i).max(1) as f64).min(max);
        let hi = (h.upper(i) as f64).min(max).max(lo);
        if let Some(&(prev_hi, _)) = points.last() {
            points.push((prev_hi, p)); // the drop, where the last bucket ended
        }
        points.push((lo, p));
        points.push((hi, p));
        // Saturating, as `samples` is: buckets are a segment's numbers
        // (a wrap would make `n - before` underflow).
        before = before.saturating_add(count);
    }
    points
}

/// A fraction as a percentage with the digits it needs.
fn percent(y: f64) -> String {
    let pct = y * 100.0;
    if pct >= 1.0 {
        format!("{pct:.0}%")
    } else {
        let digits = (-pct.log10()).ceil().clamp(1.0, 12.0) as usize;
        format!("{pct:.digits$}%")
    }
}

/// The SVG for `s`, or plotters' error as text.
pub fn svg(s: &Snapshot) -> Result<String, String> {
    let total = s.total();
    let mut calls = Vec::new();
    for op in 0..OPS {
        for ctx in 0..CONTEXTS {
            let h = &total.latency[op][ctx];
            if h.samples() > 0 {
                calls.push(Series {
                    label: format!(
                        "{} {} ({} timed)",
                        names::OPS[op],
                        names::CONTEXTS[ctx],
                        h.samples()
                    ),
                    points: ccdf(h),
                });
            }
        }
    }
    let mut scopes = Vec::new();
    for th in &s.threads {
        let h = &th.noreclaim_scope;
        if h.samples() > 0 {
            scopes.push(Series {
                label: format!(
                    "{} {} ({} timed)",
                    th.tid,
                    thread_name(s.pid, th.tid, &th.name),
                    h.samples()
                ),
                points: ccdf(h),
            });
        }
    }
    if s.retired.noreclaim_scope.samples() > 0 {
        scopes.push(Series {
            label: format!("exited threads ({} timed)", s.retired.noreclaim_scope.samples()),
            points: ccdf(&s.retired.noreclaim_scope),
        });
    }

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2);
        let title = format!("pid {}  {}", s.pid, s.command());
        chart(
            &top,
            &format!("{title}: allocator call latency (sampled), CCDF"),
            "latency",
            "fraction of calls at least this slow",
            &calls,
        )?;
        chart(
            &bottom,
            &format!("{title}: NORECLAIM scopes held, push to pop (sampled), CCDF"),
            "scope duration",
            "fraction of scopes at least this long",
            &scopes,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn thread_name(pid: u32, tid: u32, recorded: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .map(|n| n.trim_end().to_string())
        .unwrap_or_else(|_| recorded.to_string())
}

/// One log-log CCDF chart of `series` in `area`; a note when there is none.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), String> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_min = points().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points().map(|p| p.0).fold(0.0, f64::max);
    let y_min = points().map(|p| p.1).fold(1.0, f64::min);
    // At least a decade each way, so that the log axes have labels.
    let (x_range, y_range) = if series.is_empty() {
        (1.0..1e6, 1e-3..1.0)
    } else {
        (
            x_min.max(1.0) / 3.0..x_max.max(1.0) * 3.0,
            (y_min / 3.0).clamp(1e-12, 0.05)..1.2,
        )
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| crate::report::fmt_ns(*x as u64))
        .y_label_formatter(&|y| percent(*y))
        .draw()
        .map_err(|e| e.to_string())?;
    if series.is_empty() {
        let style = ("sans-serif", 16).into_font().color(&BLACK);
        area.draw_text("no samples yet", &style, (90, 80))
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}
