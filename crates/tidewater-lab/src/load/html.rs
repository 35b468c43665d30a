//! The HTML report (`--html FILE`): one self-contained page, viewable
//! offline, with the summary, the verdicts and charts over time (request
//! latency, throughput, errors, pool usage, memory, and users for a
//! ramp) drawn as inline SVG by `plotters`. No script, no external file.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::load::ramp::RampReport;
use crate::load::report::{LoadReport, SecondSample, count};
use crate::load::slo::{percent, seconds};

/// One line on a chart.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 300;

/// Draws `series` over time as an SVG document; the error in words when
/// plotting fails.
fn chart(title: &str, unit: &str, series: &[Series]) -> Result<String, String> {
    let x_max = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let y_top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| y.is_finite())
        .fold(0.0_f64, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds since the start")
            .y_desc(unit)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| e.to_string())?;
        for line in series {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN_: RGBColor = RGBColor(44, 160, 44);
const RED_: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(110, 110, 110);
const PURPLE: RGBColor = RGBColor(148, 103, 189);

/// The points `f` gives for each sample of `timeline` that it gives one
/// for, against the sample's time.
fn points(timeline: &[SecondSample], f: impl Fn(&SecondSample) -> Option<f64>) -> Vec<(f64, f64)> {
    timeline
        .iter()
        .filter_map(|s| f(s).map(|y| (s.t, y)))
        .collect()
}

/// The charts of `report`'s timeline: their names, and each drawn (or
/// why not).
fn charts(report: &LoadReport) -> Vec<(String, Result<String, String>)> {
    let timeline = &report.timeline;
    let mut out = vec![
        ("Request latency".to_owned(), latency_chart(timeline)),
        (
            "Throughput".to_owned(),
            chart(
                "Throughput",
                "requests per second",
                &[Series {
                    name: "requests/s",
                    color: GREEN_,
                    points: points(timeline, |s| Some(s.requests as f64)),
                }],
            ),
        ),
        ("Errors".to_owned(), errors_chart(timeline)),
        ("Pool usage".to_owned(), pool_chart(timeline)),
    ];
    if timeline.iter().any(|s| s.rss_bytes.is_some()) {
        out.push((
            "Service memory".to_owned(),
            chart(
                "Service resident memory (VmRSS)",
                "MiB",
                &[Series {
                    name: "resident",
                    color: PURPLE,
                    points: points(timeline, |s| {
                        s.rss_bytes.map(|b| b as f64 / f64::from(1 << 20))
                    }),
                }],
            ),
        ));
    }
    if report.ramp.is_some() {
        out.push((
            "Users".to_owned(),
            chart(
                "Virtual users",
                "users",
                &[Series {
                    name: "users",
                    color: GREY,
                    points: points(timeline, |s| Some(f64::from(s.users))),
                }],
            ),
        ));
    }
    out
}

/// Request latency, p50 and p99, each second that saw requests.
fn latency_chart(timeline: &[SecondSample]) -> Result<String, String> {
    chart(
        "Request latency (per second)",
        "milliseconds",
        &[
            Series {
                name: "p50",
                color: BLUE_,
                points: points(timeline, |s| {
                    (s.requests > 0).then_some(s.latency_p50 * 1e3)
                }),
            },
            Series {
                name: "p99",
                color: ORANGE,
                points: points(timeline, |s| {
                    (s.requests > 0).then_some(s.latency_p99 * 1e3)
                }),
            },
        ],
    )
}

/// Errors and unavailable answers per second.
fn errors_chart(timeline: &[SecondSample]) -> Result<String, String> {
    chart(
        "Errors",
        "requests per second",
        &[
            Series {
                name: "errors/s",
                color: RED_,
                points: points(timeline, |s| Some(s.errors as f64)),
            },
            Series {
                name: "unavailable (5xx, no answer)/s",
                color: PURPLE,
                points: points(timeline, |s| Some(s.unavailable as f64)),
            },
        ],
    )
}

/// The pool: in use, its size, the waiting callers, and the adaptive
/// limit when there is one.
fn pool_chart(timeline: &[SecondSample]) -> Result<String, String> {
    let mut usage = vec![
        Series {
            name: "in use",
            color: BLUE_,
            points: points(timeline, |s| s.pool.map(|p| f64::from(p.in_use))),
        },
        Series {
            name: "max size",
            color: GREY,
            points: points(timeline, |s| s.pool.map(|p| f64::from(p.max_size))),
        },
        Series {
            name: "waiting",
            color: RED_,
            points: points(timeline, |s| s.pool.map(|p| f64::from(p.waiters))),
        },
    ];
    let limit = points(timeline, |s| {
        s.pool.filter(|p| p.adaptive).map(|p| f64::from(p.limit))
    });
    if !limit.is_empty() {
        usage.push(Series {
            name: "adaptive limit",
            color: ORANGE,
            points: limit,
        });
    }
    chart(
        "Pool usage (one-second samples of /api/pools)",
        "connections / callers",
        &usage,
    )
}

/// The whole page.
pub fn render(report: &LoadReport) -> String {
    let mut page = String::new();
    head(&mut page, report);
    verdicts(&mut page, report);
    summary(&mut page, report);
    if let Some(ramp) = &report.ramp {
        ramp_table(&mut page, ramp);
    }
    let _ = writeln!(page, "<h2>Over time</h2>");
    for (name, svg) in charts(report) {
        match svg {
            Ok(svg) => {
                let _ = writeln!(page, "<figure aria-label=\"{name}\">{svg}</figure>");
            }
            Err(error) => {
                let _ = writeln!(
                    page,
                    "<p>{name}: the chart could not be drawn: {}</p>",
                    escape(&error)
                );
            }
        }
    }
    answers(&mut page, report);
    let _ = writeln!(
        page,
        "<p>Made by <code>tidewater-lab load</code>; the fields are described in docs/lab.md.</p></body></html>"
    );
    page
}

/// The page's head, its title with the outcome, and the run's command,
/// start and target.
fn head(page: &mut String, report: &LoadReport) {
    let verdict = if report.passed { "PASSED" } else { "FAILED" };
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tidewater-lab load: {verdict}</title>\
         <style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}\
         .pass{{color:#1a7f37;font-weight:bold}} .fail{{color:#c62828;font-weight:bold}}\
         code{{background:#f4f4f4;padding:2px 4px}} figure{{margin:1.5em 0}}\
         </style></head><body>\n"
    );
    let class = if report.passed { "pass" } else { "fail" };
    let _ = writeln!(
        page,
        "<h1>tidewater-lab load: <span class=\"{class}\">{verdict}</span></h1>"
    );
    let _ = writeln!(
        page,
        "<p><code>{}</code><br>started {} against {}{}</p>",
        escape(&report.command),
        escape(&report.started_at),
        escape(&report.target.url),
        report
            .target
            .backend
            .as_ref()
            .map_or(String::new(), |b| format!(" ({}, spawned)", escape(b)))
    );
}

/// The verdicts' table.
fn verdicts(page: &mut String, report: &LoadReport) {
    let _ = writeln!(
        page,
        "<h2>Verdicts</h2><table><tr><th></th><th>check</th><th>measured against the objective</th></tr>"
    );
    for verdict in &report.verdicts {
        let (class, word) = if verdict.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            page,
            "<tr><td class=\"{class}\">{word}</td><td>{}</td><td>{}</td></tr>",
            escape(&verdict.name),
            escape(&verdict.text)
        );
    }
    let _ = writeln!(page, "</table>");
}

/// The summary's table, and the correctness check's violations.
fn summary(page: &mut String, report: &LoadReport) {
    let l = &report.latency_seconds;
    let wait = &report.pool.acquire_wait_seconds;
    let rows = [
        ("users", report.users.to_string()),
        (
            "think time (mean)",
            seconds(report.scenario.think_mean_seconds),
        ),
        ("duration", format!("{:.1} s", report.duration_seconds)),
        ("requests", count(report.requests)),
        (
            "throughput",
            format!("{:.0} requests/s", report.throughput_rps),
        ),
        (
            "request latency",
            format!(
                "p50 {} · p95 {} · p99 {} · max {}",
                seconds(l.p50),
                seconds(l.p95),
                seconds(l.p99),
                seconds(l.max)
            ),
        ),
        (
            "acquisition wait (bucket upper bounds)",
            format!(
                "p50 ≤ {} · p99 ≤ {} · max ≤ {}{}",
                seconds(wait.p50),
                seconds(wait.p99),
                seconds(wait.max),
                if wait.above_last_bucket {
                    " (some above the last bucket)"
                } else {
                    ""
                }
            ),
        ),
        (
            "errors",
            format!("{} ({})", count(report.errors), percent(report.error_rate)),
        ),
        ("availability", percent(report.availability)),
        ("pool", pool_row(report)),
        ("service memory", memory_row(report)),
        ("correctness", correctness_row(report)),
    ];
    let _ = writeln!(page, "<h2>Summary</h2><table>");
    for (name, value) in rows {
        let _ = writeln!(page, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    let _ = writeln!(page, "</table>");
    if !report.correctness.violations.is_empty() {
        let _ = writeln!(page, "<h3>Violations</h3><ul>");
        for violation in &report.correctness.violations {
            let _ = writeln!(page, "<li>{}</li>", escape(violation));
        }
        let _ = writeln!(page, "</ul>");
    }
}

/// The summary's pool row.
fn pool_row(report: &LoadReport) -> String {
    let pool = &report.pool;
    format!(
        "{} · max {} · {} checkouts/s · held mean {} · peak {} in use, {} waiting",
        escape(&pool.name),
        pool.max_size,
        format_args!("{:.0}", pool.checkouts_per_second),
        seconds(pool.use_time_seconds.mean),
        pool.peak_in_use,
        pool.peak_waiters
    ) + &pool
        .adaptive_limit
        .map_or(String::new(), |limit| format!(" · {limit}"))
}

/// The summary's service memory row.
fn memory_row(report: &LoadReport) -> String {
    report
        .memory
        .map_or("unknown (not spawned by this run)".to_owned(), |m| {
            format!(
                "peak {:.1} MiB",
                m.peak_rss_bytes as f64 / f64::from(1 << 20)
            )
        })
}

/// The summary's correctness row.
fn correctness_row(report: &LoadReport) -> String {
    let correctness = &report.correctness;
    format!(
        "{} · {} transfers booked, {} acknowledged, {} replays, {} violations",
        if correctness.passed {
            "passed"
        } else {
            "FAILED"
        },
        count(correctness.transfers_booked),
        count(correctness.transfers_acknowledged),
        count(correctness.replays),
        correctness.violation_count
    )
}

/// The ramp's steps.
fn ramp_table(page: &mut String, ramp: &RampReport) {
    let _ = writeln!(
        page,
        "<h2>Ramp</h2><p>{}</p><table><tr><th>users</th><th>requests/s</th><th>latency p99</th><th>acquire p99</th><th>errors</th><th>peak in use</th><th>peak waiting</th><th>verdict</th></tr>",
        escape(&ramp.summary())
    );
    for step in &ramp.steps {
        let (class, word) = if step.passed {
            ("pass", "pass")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            step.users,
            step.throughput_rps,
            seconds(step.latency_seconds.p99),
            step.acquire_wait_p99_seconds
                .map_or("unknown".to_owned(), |p| format!("≤ {}", seconds(p))),
            percent(step.error_rate),
            step.peak_in_use,
            step.peak_waiters
        );
    }
    let _ = writeln!(page, "</table>");
}

/// The answers by status and problem type.
fn answers(page: &mut String, report: &LoadReport) {
    let _ = writeln!(
        page,
        "<h2>Answers</h2><table><tr><th>answer</th><th>count</th></tr>"
    );
    for (label, n) in &report.answers {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(label),
            count(*n)
        );
    }
    let _ = writeln!(page, "</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_inline_svg_with_its_legend() {
        let svg = chart(
            "Throughput",
            "requests per second",
            &[Series {
                name: "requests/s",
                color: GREEN_,
                points: vec![(1.0, 10.0), (2.0, 30.0), (3.0, 20.0)],
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("Throughput"));
        assert!(svg.contains("requests/s"));
        assert!(svg.contains("<polyline"), "a line is drawn");
        assert!(
            !svg.contains("http://") || svg.contains("http://www.w3.org"),
            "nothing external"
        );
    }

    #[test]
    fn empty_series_still_draw() {
        let svg = chart(
            "Errors",
            "per second",
            &[Series {
                name: "errors/s",
                color: RED_,
                points: Vec::new(),
            }],
        )
        .unwrap();
        assert!(svg.contains("<svg"));
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }
}
