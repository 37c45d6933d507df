//! A small SVG line chart: axes with ticks, one polyline per series (solid or dashed, optionally with
//! a shaded band), point markers for sparse series, and a legend. Enough for the quality report's
//! curves without a plotting dependency; the output is deterministic text.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points (x, y), in increasing x.
    pub points: Vec<(f64, f64)>,
    /// CSS colour.
    pub color: String,
    /// Dashed line (used for published numbers).
    pub dashed: bool,
    /// Draw a marker at each point (for sparse series).
    pub markers: bool,
    /// A shaded band (x, low, high) around the line, if any.
    pub band: Vec<(f64, f64, f64)>,
}

/// A chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
    /// Tick step on x.
    pub x_step: f64,
    /// Tick step on y.
    pub y_step: f64,
    /// The lines.
    pub series: Vec<Series>,
}

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 560.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Escapes text for XML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Ticks from `lo` to `hi` every `step` (at most 200; none for a non-positive step).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if step <= 0.0 || !step.is_finite() || hi < lo {
        return Vec::new();
    }
    let first = (lo / step).ceil() as i64;
    (0..200)
        .map(|i| (first + i) as f64 * step)
        .take_while(|t| *t <= hi + 1e-9)
        .collect()
}

/// Renders the chart as a standalone SVG document.
pub fn render(chart: &Chart) -> String {
    let (x0, x1) = chart.x_range;
    let (y0, y1) = chart.y_range;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0).max(f64::EPSILON) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y - y0) / (y1 - y0).max(f64::EPSILON) * plot_h;
    let inside = |x: f64, y: f64| x >= x0 && x <= x1 && y.is_finite();
    let clamp_y = |y: f64| y.clamp(y0, y1);

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="24" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(&chart.title)
    );
    for t in ticks(x0, x1, chart.x_step) {
        let x = sx(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{t}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 18.0
        );
    }
    for t in ticks(y0, y1, chart.y_step) {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{t}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT:.1}" y="{TOP:.1}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 18.0,
        escape(&chart.x_label)
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(&chart.y_label)
    );

    for series in &chart.series {
        let band: Vec<&(f64, f64, f64)> = series
            .band
            .iter()
            .filter(|(x, lo, hi)| inside(*x, *lo) && hi.is_finite())
            .collect();
        if band.len() > 1 {
            let mut path = String::new();
            for (x, _, hi) in &band {
                let _ = write!(path, "{:.1},{:.1} ", sx(*x), sy(clamp_y(*hi)));
            }
            for (x, lo, _) in band.iter().rev() {
                let _ = write!(path, "{:.1},{:.1} ", sx(*x), sy(clamp_y(*lo)));
            }
            let _ = writeln!(
                s,
                r#"<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>"#,
                path.trim_end(),
                escape(&series.color)
            );
        }
        let points: Vec<String> = series
            .points
            .iter()
            .filter(|(x, y)| inside(*x, *y))
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(clamp_y(*y))))
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                points.join(" "),
                escape(&series.color),
                if series.dashed {
                    r#" stroke-dasharray="6,4""#
                } else {
                    ""
                }
            );
        }
        if series.markers {
            for p in &points {
                if let Some((x, y)) = p.split_once(',') {
                    let _ = writeln!(
                        s,
                        r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                        escape(&series.color)
                    );
                }
            }
        }
    }

    for (i, series) in chart.series.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let x = LEFT + plot_w + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 26.0,
            escape(&series.color),
            if series.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            },
            x + 32.0,
            y + 4.0,
            escape(&series.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_bands_markers_and_legend() {
        let chart = Chart {
            title: "A & B".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x_range: (0.0, 10.0),
            y_range: (0.0, 5.0),
            x_step: 5.0,
            y_step: 1.0,
            series: vec![
                Series {
                    label: "solid <1>".into(),
                    points: vec![(0.0, 1.0), (10.0, 2.0), (20.0, 9.0)],
                    color: "#123456".into(),
                    dashed: false,
                    markers: false,
                    band: vec![(0.0, 0.5, 1.5), (10.0, 1.5, 2.5)],
                },
                Series {
                    label: "paper".into(),
                    points: vec![(5.0, 4.0), (10.0, 9.0)],
                    color: "red".into(),
                    dashed: true,
                    markers: true,
                    band: vec![],
                },
            ],
        };
        let svg = render(&chart);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("A &amp; B") && svg.contains("solid &lt;1&gt;"));
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "the out-of-range point is dropped"
        );
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("stroke-dasharray"));
        // x = 10 maps to the right edge of the plot; y = 9 is clamped to the top.
        assert!(svg.contains(&format!("{:.1},{:.1}", LEFT + (WIDTH - LEFT - RIGHT), TOP)));
        assert_eq!(ticks(0.0, 10.0, 5.0), [0.0, 5.0, 10.0]);
        assert!(ticks(0.0, 10.0, 0.0).is_empty());
    }
}
