//! The conformance evidence: what a run found, as `report.md` (one table for people),
//! `report.json` (the same for machines), `junit.xml` (for CI systems) and snapshots of nodes,
//! pods and events as `kubectl get -o yaml` prints them (a `v1` `List`, `managedFields` hidden).
//!
//! Layout of the evidence directory:
//! ```text
//! report.md  report.json  junit.xml  nodes.yaml
//! <scenario>/pods.yaml  <scenario>/events.yaml
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::Path;

/// One claim a scenario checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub passed: bool,
    /// What was expected.
    pub expected: String,
    /// What was seen.
    pub seen: String,
}

/// One pod of a scenario, as last seen before cleanup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRow {
    /// Pod name.
    pub pod: String,
    /// Phase.
    pub phase: String,
    /// The node it was bound to.
    pub node: Option<String>,
    /// Its devices (`hami.io/vgpu-devices-allocated`, decoded).
    pub devices: String,
    /// The scheduler's `FilteringFailed` messages.
    pub reasons: Vec<String>,
    /// Every event about it, `Reason: message`.
    pub events: Vec<String>,
}

/// One scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// What the scenario proves.
    pub proves: String,
    /// Pass or fail.
    pub passed: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The scenario's pods.
    pub pods: Vec<PodRow>,
    /// An error that stopped the scenario early (API failure), if any.
    pub error: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

impl ScenarioResult {
    /// The first failing check as `what: expected E, seen S` (or the error).
    pub fn failure(&self) -> Option<String> {
        if let Some(e) = &self.error {
            return Some(format!("error: {e}"));
        }
        self.checks
            .iter()
            .find(|c| !c.passed)
            .map(|c| format!("{}: expected {}; seen {}", c.what, c.expected, c.seen))
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The cluster, in words.
    pub cluster: String,
    /// The GPU inventory at the start, in words.
    pub inventory: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// Scenario outcomes.
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    /// True when every scenario passed.
    pub fn passed(&self) -> bool {
        self.scenarios.iter().all(|s| s.passed)
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report: a header, then one table with a row per pod (scenarios without pods get
/// one row), then every failing check with what was expected and seen.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let passed = report.scenarios.iter().filter(|s| s.passed).count();
    let _ = writeln!(out, "# sliceguard conformance\n");
    let _ = writeln!(out, "- cluster: {}", report.cluster);
    let _ = writeln!(out, "- inventory: {}", report.inventory);
    let _ = writeln!(out, "- started: {}", report.started);
    let _ = writeln!(
        out,
        "- result: {passed} of {} scenarios passed\n",
        report.scenarios.len()
    );
    let _ = writeln!(
        out,
        "| scenario | result | pod | node | devices | reasons | events |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let result = if s.passed { "pass" } else { "**FAIL**" };
        if s.pods.is_empty() {
            let _ = writeln!(out, "| {} | {} | - | - | - | - | - |", s.name, result);
        }
        for p in &s.pods {
            let _ = writeln!(
                out,
                "| {} | {} | {} ({}) | {} | {} | {} | {} |",
                s.name,
                result,
                cell(&p.pod),
                cell(&p.phase),
                cell(p.node.as_deref().unwrap_or("-")),
                cell(&p.devices),
                cell(&if p.reasons.is_empty() {
                    "-".to_string()
                } else {
                    p.reasons.join("; ")
                }),
                cell(&if p.events.is_empty() {
                    "-".to_string()
                } else {
                    p.events.join("; ")
                }),
            );
        }
    }
    let _ = writeln!(out, "\n## What each scenario proves\n");
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "- **{}** ({}, {:.2} s): {}",
            s.name,
            if s.passed { "pass" } else { "FAIL" },
            s.seconds,
            s.proves
        );
    }
    let failures: Vec<&ScenarioResult> = report.scenarios.iter().filter(|s| !s.passed).collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\n## Failures\n");
        for s in failures {
            if let Some(e) = &s.error {
                let _ = writeln!(out, "- {}: error: {}", s.name, cell(e));
            }
            for c in s.checks.iter().filter(|c| !c.passed) {
                let _ = writeln!(
                    out,
                    "- {}: {}: expected {}; seen {}",
                    s.name,
                    cell(&c.what),
                    cell(&c.expected),
                    cell(&c.seen)
                );
            }
        }
    }
    out
}

/// The plain-text table printed to the terminal: one line per scenario, and the first failure.
pub fn terminal_table(report: &Report) -> String {
    let width = report
        .scenarios
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut out = String::new();
    let _ = writeln!(out, "cluster: {}", report.cluster);
    let _ = writeln!(out, "inventory: {}", report.inventory);
    let _ = writeln!(
        out,
        "{:<width$}  {:<6}  {:>4}  {:>6}  detail",
        "scenario", "result", "pods", "secs"
    );
    for s in &report.scenarios {
        let detail = match s.failure() {
            Some(f) => f,
            None => format!("{} checks held", s.checks.len()),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:>4}  {:>6.2}  {}",
            s.name,
            if s.passed { "pass" } else { "FAIL" },
            s.pods.len(),
            s.seconds,
            detail
        );
    }
    let passed = report.scenarios.iter().filter(|s| s.passed).count();
    let _ = writeln!(
        out,
        "{passed} of {} scenarios passed",
        report.scenarios.len()
    );
    out
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `testsuite` (`sliceguard-conformance`), one `testcase` per scenario, a
/// `failure` with every failing check's expected/seen, and the checks in `system-out`.
pub fn junit(report: &Report) -> String {
    let failures = report.scenarios.iter().filter(|s| !s.passed).count();
    let total: f64 = report.scenarios.iter().map(|s| s.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"sliceguard-conformance\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        report.scenarios.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"sliceguard-conformance\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\" timestamp=\"{}\">",
        report.scenarios.len(),
        xml_escape(&report.started)
    );
    let _ = writeln!(
        out,
        "    <properties><property name=\"cluster\" value=\"{}\"/></properties>",
        xml_escape(&report.cluster)
    );
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "    <testcase classname=\"conformance\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(&s.name),
            s.seconds
        );
        if !s.passed {
            let message = s.failure().unwrap_or_default();
            let mut body = String::new();
            if let Some(e) = &s.error {
                let _ = writeln!(body, "error: {e}");
            }
            for c in s.checks.iter().filter(|c| !c.passed) {
                let _ = writeln!(
                    body,
                    "{}\n  expected: {}\n  seen: {}",
                    c.what, c.expected, c.seen
                );
            }
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"ScenarioFailed\">{}</failure>",
                xml_escape(&message),
                xml_escape(&body)
            );
        }
        let mut log = String::new();
        for c in &s.checks {
            let _ = writeln!(
                log,
                "[{}] {} (expected: {}; seen: {})",
                if c.passed { "ok" } else { "FAIL" },
                c.what,
                c.expected,
                c.seen
            );
        }
        let _ = writeln!(out, "      <system-out>{}</system-out>", xml_escape(&log));
        let _ = writeln!(out, "    </testcase>");
    }
    let _ = writeln!(out, "  </testsuite>");
    let _ = writeln!(out, "</testsuites>");
    out
}

fn strip_managed_fields(value: &mut Value) {
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// A list of objects as `kubectl get -o yaml` prints it (`apiVersion: v1`, `kind: List`,
/// `managedFields` hidden as kubectl hides them by default).
pub fn list_yaml(kind: &str, items: &[Value]) -> Result<String, String> {
    let items: Vec<Value> = items
        .iter()
        .cloned()
        .map(|mut v| {
            strip_managed_fields(&mut v);
            if v.get("kind").is_none()
                && let Some(o) = v.as_object_mut()
            {
                o.insert("apiVersion".into(), json!("v1"));
                o.insert("kind".into(), json!(kind));
            }
            v
        })
        .collect();
    let list = json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    });
    serde_saphyr::to_string(&list).map_err(|e| format!("rendering {kind} YAML: {e}"))
}

/// Snapshots to write with the report.
#[derive(Debug, Clone, Default)]
pub struct Snapshots {
    /// Nodes at the end of the run.
    pub nodes: Vec<Value>,
    /// Per scenario: its pods and events before cleanup.
    pub scenarios: Vec<(String, Vec<Value>, Vec<Value>)>,
}

/// Writes the evidence directory.
pub fn write(dir: &Path, report: &Report, snapshots: &Snapshots) -> Result<(), String> {
    let io = |path: &Path, e: std::io::Error| format!("writing {}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let put = |name: &str, text: &str| -> Result<(), String> {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| io(&path, e))
    };
    put("report.md", &markdown(report))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| format!("report.json: {e}"))?;
    put("report.json", &json)?;
    put("junit.xml", &junit(report))?;
    put("nodes.yaml", &list_yaml("Node", &snapshots.nodes)?)?;
    for (scenario, pods, events) in &snapshots.scenarios {
        put(&format!("{scenario}/pods.yaml"), &list_yaml("Pod", pods)?)?;
        put(
            &format!("{scenario}/events.yaml"),
            &list_yaml("Event", events)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            cluster: "sim".into(),
            inventory: "1 GPU nodes".into(),
            started: "2026-01-01T00:00:00Z".into(),
            scenarios: vec![
                ScenarioResult {
                    name: "fractional".into(),
                    proves: "p".into(),
                    passed: true,
                    checks: vec![Check {
                        what: "a".into(),
                        passed: true,
                        expected: "x".into(),
                        seen: "x".into(),
                    }],
                    pods: vec![PodRow {
                        pod: "f".into(),
                        phase: "Running".into(),
                        node: Some("n1".into()),
                        devices: "GPU-1 3000MiB/30%".into(),
                        reasons: vec![],
                        events: vec!["FilteringSucceed: find fit node(n1)|x".into()],
                    }],
                    error: None,
                    seconds: 0.5,
                },
                ScenarioResult {
                    name: "sharing".into(),
                    proves: "q".into(),
                    passed: false,
                    checks: vec![Check {
                        what: "ten <pods> Running".into(),
                        passed: false,
                        expected: "10 Running".into(),
                        seen: "5 Running & 5 Pending".into(),
                    }],
                    pods: vec![],
                    error: None,
                    seconds: 1.0,
                },
            ],
        }
    }

    #[test]
    fn markdown_has_one_row_per_pod_and_the_failure() {
        let md = markdown(&sample());
        assert!(md.contains("| fractional | pass | f (Running) | n1 | GPU-1 3000MiB/30% | - |"));
        assert!(md.contains("find fit node(n1)\\|x"), "pipes are escaped");
        assert!(md.contains("| sharing | **FAIL** | - |"));
        assert!(md.contains("expected 10 Running; seen 5 Running & 5 Pending"));
        assert!(md.contains("1 of 2 scenarios passed"));
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = junit(&sample());
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains(
            "ten &lt;pods&gt; Running: expected 10 Running; seen 5 Running &amp; 5 Pending"
        ));
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert_eq!(xml.matches("<failure ").count(), 1);
    }

    #[test]
    fn list_yaml_reads_back_as_a_list() {
        let node = json!({"metadata": {"name": "n1", "managedFields": [{"manager": "x"}]}});
        let text = list_yaml("Node", &[node]).unwrap();
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["kind"], "List");
        assert_eq!(back["items"][0]["kind"], "Node");
        assert_eq!(back["items"][0]["metadata"]["name"], "n1");
        assert!(back["items"][0]["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn report_json_round_trips() {
        let r = sample();
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
