//! The SVG document of the matrix plot: a title, two panels side by side (latency; relay CPU per
//! delivered Gbit/s) over a log-scale watcher axis, and a legend. Hand-written SVG 1.1 with no
//! scripts, fonts or external references, so it renders the same in a browser, on GitHub and in
//! `rsvg-convert`. Each line carries `data-series` and `data-metric` attributes and a `<title>`.

use std::fmt::{self, Write as _};

use super::axis::{self, Scale};
use super::{Point, Series};

const WIDTH: f64 = 1000.0;
const PANEL_WIDTH: f64 = WIDTH / 2.0;
/// Plot area of a panel, relative to the panel's left edge (x) and to the document (y).
const PLOT_LEFT: f64 = 72.0;
const PLOT_RIGHT: f64 = 480.0;
const PLOT_TOP: f64 = 64.0;
const PLOT_BOTTOM: f64 = 380.0;
const LEGEND_TOP: f64 = 436.0;
const LEGEND_ROW: f64 = 22.0;
/// Closest two x tick labels may be, in pixels, before the second is left out.
const MIN_LABEL_GAP: f64 = 34.0;

/// Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), cycled.
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933",
];

fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// Appends formatted text; writing to a `String` cannot fail.
fn put(out: &mut String, args: fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

/// Escapes text for element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// One quantity drawn against watchers.
struct Metric {
    /// The `data-metric` attribute and the word in tooltips.
    key: &'static str,
    unit: &'static str,
    value: fn(&Point) -> Option<f64>,
    dashed: bool,
}

const P99: Metric = Metric {
    key: "p99",
    unit: "ms",
    value: |p| p.p99_ms.filter(|v| *v > 0.0),
    dashed: false,
};
const P50: Metric = Metric {
    key: "p50",
    unit: "ms",
    value: |p| p.p50_ms.filter(|v| *v > 0.0),
    dashed: true,
};
const CPU_PER_GBPS: Metric = Metric {
    key: "cpu_per_gbps",
    unit: "cores per Gbit/s",
    value: Point::cpu_per_gbps,
    dashed: false,
};

/// What one panel shows and how its y axis is scaled.
struct Panel<'a> {
    index: usize,
    title: &'a str,
    y_label: &'a str,
    metrics: &'a [Metric],
    log_y: bool,
}

/// A scale with the values to mark on it.
struct Axis {
    scale: Scale,
    ticks: Vec<f64>,
}

/// The whole document for `series`, titled `title`.
pub fn render(series: &[Series], title: &str) -> String {
    let legend_rows = legend_layout(series).last().map_or(1, |item| item.row + 1);
    let height = LEGEND_TOP + LEGEND_ROW * legend_rows as f64 + 12.0;
    let mut out = String::new();
    put(
        &mut out,
        format_args!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"DejaVu Sans, Helvetica, Arial, \
             sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"26\" text-anchor=\"middle\" font-size=\"17\" \
             font-weight=\"bold\">{}</text>\n",
            WIDTH / 2.0,
            escape(title)
        ),
    );
    let x = x_axis(series);
    draw_panel(
        &mut out,
        series,
        &x,
        &Panel {
            index: 0,
            title: "Latency: p99 (solid), p50 (dashed)",
            y_label: "latency, ms (log scale)",
            metrics: &[P99, P50],
            log_y: true,
        },
    );
    draw_panel(
        &mut out,
        series,
        &x,
        &Panel {
            index: 1,
            title: "Relay CPU per delivered Gbit/s",
            y_label: "relay CPU cores per Gbit/s",
            metrics: &[CPU_PER_GBPS],
            log_y: false,
        },
    );
    draw_legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

/// The watcher axis shared by both panels (positions relative to a panel's left edge), with
/// its ticks: the watcher counts of the matrix when there are few, decades otherwise.
fn x_axis(series: &[Series]) -> Axis {
    let mut counts: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.watchers as f64))
        .filter(|w| *w > 0.0)
        .collect();
    counts.sort_by(f64::total_cmp);
    counts.dedup();
    let (lo, hi) = match (counts.first(), counts.last()) {
        (Some(lo), Some(hi)) => (lo / 1.25, hi * 1.25),
        _ => (1.0, 10.0),
    };
    let ticks = if counts.len() <= 8 {
        counts
    } else {
        axis::log_ticks(lo, hi)
    };
    Axis {
        scale: Scale::log(lo, hi, PLOT_LEFT, PLOT_RIGHT),
        ticks,
    }
}

/// The y axis of `panel` over every value its metrics take, with its ticks.
fn y_axis(series: &[Series], panel: &Panel<'_>) -> Axis {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| &s.points)
        .flat_map(|p| panel.metrics.iter().filter_map(|m| (m.value)(p)))
        .filter(|v| v.is_finite())
        .collect();
    let max = values.iter().copied().fold(f64::NAN, f64::max);
    if panel.log_y {
        let min = values.iter().copied().fold(f64::NAN, f64::min);
        let (lo, hi) = if min.is_finite() {
            (min / 1.5, max * 1.5)
        } else {
            (1.0, 10.0)
        };
        Axis {
            scale: Scale::log(lo, hi, PLOT_BOTTOM, PLOT_TOP),
            ticks: axis::log_ticks(lo, hi),
        }
    } else {
        let ticks = axis::linear_ticks(0.0, if max > 0.0 { max } else { 1.0 }, 6);
        let top = ticks.last().copied().unwrap_or(1.0);
        Axis {
            scale: Scale::linear(0.0, top, PLOT_BOTTOM, PLOT_TOP),
            ticks,
        }
    }
}

fn draw_panel(out: &mut String, series: &[Series], x: &Axis, panel: &Panel<'_>) {
    let y = y_axis(series, panel);
    let left = panel.index as f64 * PANEL_WIDTH;
    let (plot_w, plot_h) = (PLOT_RIGHT - PLOT_LEFT, PLOT_BOTTOM - PLOT_TOP);
    put(
        out,
        format_args!(
            "<g transform=\"translate({left},0)\">\n<text x=\"{}\" y=\"52\" text-anchor=\"middle\" \
             font-size=\"13\" font-weight=\"bold\">{}</text>\n<rect x=\"{PLOT_LEFT}\" \
             y=\"{PLOT_TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" \
             stroke=\"#888\"/>\n",
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            escape(panel.title)
        ),
    );
    for &t in &y.ticks {
        let py = y.scale.px(t);
        put(
            out,
            format_args!(
                "<line x1=\"{PLOT_LEFT}\" x2=\"{PLOT_RIGHT}\" y1=\"{py:.1}\" y2=\"{py:.1}\" \
                 stroke=\"#e3e3e3\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                PLOT_LEFT - 6.0,
                py + 4.0,
                axis::label(t)
            ),
        );
    }
    let mut last_label = f64::NEG_INFINITY;
    for &t in &x.ticks {
        let px = x.scale.px(t);
        put(
            out,
            format_args!(
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{PLOT_TOP}\" y2=\"{PLOT_BOTTOM}\" \
                 stroke=\"#e3e3e3\"/>\n"
            ),
        );
        if px - last_label >= MIN_LABEL_GAP {
            last_label = px;
            put(
                out,
                format_args!(
                    "<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
                    PLOT_BOTTOM + 16.0,
                    axis::label(t)
                ),
            );
        }
    }
    put(
        out,
        format_args!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">watchers (log scale)</text>\n\
             <text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            PLOT_BOTTOM + 36.0,
            (PLOT_TOP + PLOT_BOTTOM) / 2.0,
            escape(panel.y_label)
        ),
    );
    for (i, s) in series.iter().enumerate() {
        for metric in panel.metrics {
            draw_line(out, s, colour(i), metric, &x.scale, &y.scale);
        }
    }
    out.push_str("</g>\n");
}

/// One series' line for one metric: a polyline per run of consecutive points that have the
/// value (a missing cell breaks the line rather than bridging it), and a marker per point.
fn draw_line(
    out: &mut String,
    series: &Series,
    colour: &str,
    metric: &Metric,
    x: &Scale,
    y: &Scale,
) {
    let name = escape(&series.name);
    let dash = if metric.dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    };
    let width = if metric.dashed { 1.5 } else { 2.0 };
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    let mut markers = String::new();
    for p in &series.points {
        let Some(v) = (metric.value)(p).filter(|v| y.contains(*v)) else {
            if runs.last().is_some_and(|r| !r.is_empty()) {
                runs.push(Vec::new());
            }
            continue;
        };
        let (px, py) = (x.px(p.watchers as f64), y.px(v));
        if let Some(run) = runs.last_mut() {
            run.push((px, py));
        }
        let fill = if metric.dashed { "white" } else { colour };
        put(
            &mut markers,
            format_args!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{fill}\" \
                 stroke=\"{colour}\"><title>{name}, {} watchers: {} {} {}</title></circle>\n",
                p.watchers,
                metric.key,
                axis::label(v),
                metric.unit
            ),
        );
    }
    for run in runs.iter().filter(|r| r.len() >= 2) {
        let points: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        put(
            out,
            format_args!(
                "<polyline data-series=\"{name}\" data-metric=\"{}\" fill=\"none\" \
                 stroke=\"{colour}\" stroke-width=\"{width}\"{dash} stroke-linejoin=\"round\" \
                 points=\"{}\"><title>{name} {}</title></polyline>\n",
                metric.key,
                points.join(" "),
                metric.key
            ),
        );
    }
    out.push_str(&markers);
}

/// Where a legend entry goes.
struct LegendItem {
    row: usize,
    x: f64,
}

/// Rough text width in pixels at 12 px (no font metrics in a hand-written SVG).
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 7.2
}

const LEGEND_SWATCH: f64 = 26.0;

/// Legend entries left to right, wrapping to a new row when the width runs out.
fn legend_layout(series: &[Series]) -> Vec<LegendItem> {
    let mut items = Vec::new();
    let (mut row, mut x) = (0, PLOT_LEFT);
    for s in series {
        let width = LEGEND_SWATCH + 6.0 + text_width(&s.name) + 24.0;
        if x + width > WIDTH - 260.0 && x > PLOT_LEFT {
            row += 1;
            x = PLOT_LEFT;
        }
        items.push(LegendItem { row, x });
        x += width;
    }
    items
}

fn draw_legend(out: &mut String, series: &[Series]) {
    let items = legend_layout(series);
    for (i, (s, item)) in series.iter().zip(&items).enumerate() {
        let y = LEGEND_TOP + LEGEND_ROW * item.row as f64;
        put(
            out,
            format_args!(
                "<line x1=\"{}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{}\" \
                 stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
                item.x,
                item.x + LEGEND_SWATCH,
                colour(i),
                item.x + LEGEND_SWATCH + 6.0,
                y + 4.0,
                escape(&s.name)
            ),
        );
    }
    // The latency panel's line-style key, at the right end of the first row.
    let y = LEGEND_TOP;
    let x = WIDTH - 250.0;
    put(
        out,
        format_args!("<text x=\"{x}\" y=\"{}\">latency:</text>\n", y + 4.0),
    );
    for (offset, label, dash) in [
        (60.0, "p99", ""),
        (140.0, "p50", " stroke-dasharray=\"6 4\""),
    ] {
        let start = x + offset;
        put(
            out,
            format_args!(
                "<line x1=\"{start}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#555\" \
                 stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\">{label}</text>\n",
                start + LEGEND_SWATCH,
                start + LEGEND_SWATCH + 6.0,
                y + 4.0
            ),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn point(watchers: u64, cpu: f64, gbps: f64, p50: f64, p99: f64) -> Point {
        Point {
            watchers,
            relay_cpu: cpu,
            delivered_gbps: Some(gbps),
            p50_ms: Some(p50),
            p99_ms: Some(p99),
        }
    }

    fn two_series() -> Vec<Series> {
        vec![
            Series {
                name: "ringcast".into(),
                points: vec![
                    point(100, 0.05, 0.26, 1.1, 28.9),
                    point(1000, 0.36, 2.65, 12.8, 208.0),
                    point(2000, 0.43, 5.22, 73.8, 220.7),
                ],
            },
            Series {
                name: "ringcast-fstream".into(),
                points: vec![
                    point(100, 0.04, 0.26, 0.9, 5.0),
                    point(2000, 0.51, 3.1, 20.0, 75.4),
                ],
            },
        ]
    }

    /// The `points` attribute of the polyline of `series` and `metric`.
    fn polyline_points<'a>(svg: &'a str, series: &str, metric: &str) -> Vec<&'a str> {
        let start = format!("<polyline data-series=\"{series}\" data-metric=\"{metric}\"");
        svg.lines()
            .filter(|l| l.starts_with(&start))
            .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
            .collect()
    }

    #[test]
    fn two_series_give_a_line_per_series_and_metric() {
        let svg = render(&two_series(), "bench matrix: test");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline ").count(), 6);
        for name in ["ringcast", "ringcast-fstream"] {
            for metric in ["p99", "p50", "cpu_per_gbps"] {
                assert_eq!(
                    polyline_points(&svg, name, metric).len(),
                    1,
                    "{name} {metric}"
                );
            }
        }
        let ringcast = polyline_points(&svg, "ringcast", "p99")[0];
        assert_eq!(ringcast.split(' ').count(), 3);
        assert!(svg.contains("stroke-dasharray=\"6 4\""));
        for text in [
            ">bench matrix: test</text>",
            ">ringcast</text>",
            ">ringcast-fstream</text>",
            ">watchers (log scale)</text>",
            ">latency, ms (log scale)</text>",
            ">relay CPU cores per Gbit/s</text>",
            ">2000</text>",
            "<title>ringcast, 1000 watchers: p99 208 ms</title>",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
    }

    #[test]
    fn higher_values_are_drawn_higher() {
        let svg = render(&two_series(), "t");
        let ys: Vec<f64> = polyline_points(&svg, "ringcast", "cpu_per_gbps")[0]
            .split(' ')
            .map(|xy| xy.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        // 0.192, 0.136, 0.082 cores per Gbit/s: falling values sit lower (larger y).
        assert!(ys[0] < ys[1] && ys[1] < ys[2], "{ys:?}");
    }

    #[test]
    fn a_missing_cell_breaks_the_line() {
        let mut series = two_series();
        series[0].points[1].p99_ms = None;
        let svg = render(&series, "t");
        assert!(polyline_points(&svg, "ringcast", "p99").is_empty());
        assert_eq!(polyline_points(&svg, "ringcast", "p50").len(), 1);
    }

    #[test]
    fn names_are_escaped() {
        let series = vec![Series {
            name: "a<b>&\"c\"".into(),
            points: vec![point(10, 0.1, 1.0, 1.0, 2.0)],
        }];
        let svg = render(&series, "x & y");
        assert!(svg.contains(">a&lt;b&gt;&amp;&quot;c&quot;</text>"));
        assert!(svg.contains(">x &amp; y</text>"));
        assert!(!svg.contains("a<b>"));
    }

    #[test]
    fn many_series_wrap_the_legend() {
        let series: Vec<Series> = (0..12)
            .map(|i| Series {
                name: format!("a-rather-long-series-name-{i}"),
                points: vec![point(100, 0.1, 1.0, 1.0, 2.0)],
            })
            .collect();
        let rows = legend_layout(&series).last().unwrap().row + 1;
        assert!(rows > 1);
        let svg = render(&series, "t");
        let height = LEGEND_TOP + LEGEND_ROW * rows as f64 + 12.0;
        assert!(svg.contains(&format!("height=\"{height}\"")));
    }
}
