//! `plot`: draws a bench-matrix directory (what `scripts/bench-matrix.sh` writes to `$OUT`) as
//! one self-contained SVG: p99 (and dashed p50) latency against watchers, and relay CPU per
//! delivered Gbit/s against watchers, one line per series.
//!
//! Input: `rows.tsv` (series, watchers, relay CPU cores, RSS before, RSS after, loadgen CPU —
//! older runs lack the last column) and `<series>-<watchers>.json`, the loadgen summary of each
//! cell, of which only `delivered_gbps` and `latency_ms.{p50,p99}` are read. Series are whatever
//! the rows name, in order of first appearance. This module reads and groups; [`axis`] holds the
//! scale and tick math and [`svg`] the drawing.

mod axis;
mod svg;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One cell of the matrix: a series at one watcher count.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub watchers: u64,
    /// Relay CPU in cores over the measurement window.
    pub relay_cpu: f64,
    /// From the cell's JSON summary; `None` when the file is missing or lacks the key.
    pub delivered_gbps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Point {
    /// Relay CPU cores per delivered Gbit/s, when something was delivered.
    pub fn cpu_per_gbps(&self) -> Option<f64> {
        self.delivered_gbps
            .filter(|g| *g > 0.0)
            .map(|g| self.relay_cpu / g)
    }
}

/// One server (or configuration) across watcher counts, sorted by watchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// The keys of a loadgen summary the plot needs; everything else (raw histograms included) is
/// skipped by the parser.
#[derive(Debug, Default, Deserialize)]
struct CellSummary {
    delivered_gbps: Option<f64>,
    #[serde(default)]
    latency_ms: Percentiles,
}

#[derive(Debug, Default, Deserialize)]
struct Percentiles {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// A row of `rows.tsv`: series, watchers and relay CPU.
fn parse_row(line: &str) -> Result<(String, u64, f64), String> {
    let mut fields = line.split('\t');
    let (Some(series), Some(watchers), Some(cpu)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(format!(
            "expected at least 3 tab-separated fields: {line:?}"
        ));
    };
    let watchers = watchers
        .trim()
        .parse()
        .map_err(|e| format!("watchers {watchers:?}: {e}"))?;
    let cpu = cpu
        .trim()
        .parse()
        .map_err(|e| format!("cpu {cpu:?}: {e}"))?;
    Ok((series.trim().to_owned(), watchers, cpu))
}

/// Groups the rows of `rows.tsv` into series, filling each point from its cell's JSON in
/// `dir`. A repeated (series, watchers) row replaces the earlier one.
pub fn read_matrix(dir: &Path) -> Result<Vec<Series>, String> {
    let rows_path = dir.join("rows.tsv");
    let rows =
        std::fs::read_to_string(&rows_path).map_err(|e| format!("{}: {e}", rows_path.display()))?;
    let mut series: Vec<Series> = Vec::new();
    for (i, line) in rows.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (name, watchers, relay_cpu) =
            parse_row(line).map_err(|e| format!("{}:{}: {e}", rows_path.display(), i + 1))?;
        let summary = read_summary(&dir.join(format!("{name}-{watchers}.json")))?;
        let point = Point {
            watchers,
            relay_cpu,
            delivered_gbps: summary.delivered_gbps,
            p50_ms: summary.latency_ms.p50,
            p99_ms: summary.latency_ms.p99,
        };
        let index = match series.iter().position(|s| s.name == name) {
            Some(index) => index,
            None => {
                series.push(Series {
                    name,
                    points: Vec::new(),
                });
                series.len() - 1
            }
        };
        let points = &mut series[index].points;
        points.retain(|p| p.watchers != watchers);
        points.push(point);
    }
    for s in &mut series {
        s.points.sort_by_key(|p| p.watchers);
    }
    Ok(series)
}

/// A cell's summary; a missing file is an empty summary (the cell failed or was skipped), a
/// malformed one an error.
fn read_summary(path: &Path) -> Result<CellSummary, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CellSummary::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads `dir` and writes its plot to `out` (default `dir/plot.svg`). Returns the path written.
pub fn run(dir: &Path, out: Option<&Path>) -> Result<PathBuf, String> {
    let series = read_matrix(dir)?;
    if series.is_empty() {
        return Err(format!("{}: rows.tsv has no rows", dir.display()));
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let document = svg::render(&series, &format!("ringcast bench matrix: {name}"));
    let out = out.map_or_else(|| dir.join("plot.svg"), Path::to_path_buf);
    std::fs::write(&out, document).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct ScratchDir(PathBuf);

    impl ScratchDir {
        fn new(name: &str) -> ScratchDir {
            let dir =
                std::env::temp_dir().join(format!("ringcast-plot-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            ScratchDir(dir)
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn summary(gbps: f64, p50: f64, p99: f64) -> String {
        // Shaped like a real summary, raw histogram included, to check unread keys are skipped.
        format!(
            r#"{{"mode":"rtmp","delivered_gbps":{gbps},
                "latency_ms":{{"count":9,"p50":{p50},"p90":1.0,"p99":{p99}}},
                "latency_us":[[1,2],[3,4]],"first_error":null}}"#
        )
    }

    #[test]
    fn rows_of_five_or_six_columns_group_into_series_in_order() {
        let dir = ScratchDir::new("group");
        std::fs::write(
            dir.0.join("rows.tsv"),
            "ringcast-fstream\t1000\t0.30\t1\t2\t0.4\nnginx\t100\t0.05\t1\t2\n\
             ringcast-fstream\t100\t0.04\t1\t2\t0.1\n",
        )
        .unwrap();
        std::fs::write(
            dir.0.join("ringcast-fstream-100.json"),
            summary(0.25, 1.0, 4.0),
        )
        .unwrap();
        std::fs::write(
            dir.0.join("ringcast-fstream-1000.json"),
            summary(2.5, 9.0, 60.0),
        )
        .unwrap();
        let series = read_matrix(&dir.0).unwrap();
        let names: Vec<_> = series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ringcast-fstream", "nginx"]);
        let watchers: Vec<_> = series[0].points.iter().map(|p| p.watchers).collect();
        assert_eq!(watchers, [100, 1000]);
        assert_eq!(series[0].points[1].p99_ms, Some(60.0));
        assert!((series[0].points[1].cpu_per_gbps().unwrap() - 0.12).abs() < 1e-12);
        // nginx-100.json is missing: the point keeps its CPU and has no latency.
        assert_eq!(series[1].points[0].p99_ms, None);
        assert_eq!(series[1].points[0].cpu_per_gbps(), None);
    }

    #[test]
    fn a_malformed_row_names_its_line() {
        let dir = ScratchDir::new("malformed");
        std::fs::write(
            dir.0.join("rows.tsv"),
            "ringcast\t100\t0.1\nringcast\tmany\t0.2\n",
        )
        .unwrap();
        let err = read_matrix(&dir.0).unwrap_err();
        assert!(err.contains("rows.tsv:2"), "{err}");
    }

    #[test]
    fn run_writes_plot_svg_beside_the_rows() {
        let dir = ScratchDir::new("run");
        std::fs::write(dir.0.join("rows.tsv"), "ceiling\t500\t0.2\t1\t1\n").unwrap();
        std::fs::write(dir.0.join("ceiling-500.json"), summary(1.3, 6.8, 30.0)).unwrap();
        let written = run(&dir.0, None).unwrap();
        assert_eq!(written, dir.0.join("plot.svg"));
        let svg = std::fs::read_to_string(written).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("ringcast bench matrix: ringcast-plot-run-"));
    }
}
