//! The conformance evidence: what a run found, as `report.md` (one table for people),
//! `report.json` (the same for machines), `junit.xml` (for CI systems) and snapshots of nodes,
//! pods and events as `kubectl get -o yaml` prints them (a `v1` `List`, `managedFields` hidden).
//!
//! Every scenario ends in one of three outcomes ([`Verdict`]): it passed, it failed (a check did
//! not hold, with what was expected and what was seen), or it was skipped because the cluster could
//! not offer what it needs (its precondition and what was seen instead). The evidence is rewritten
//! as the run goes ([`write`] after each scenario, with [`Report::running`] naming the scenario in
//! progress), so an interrupted run leaves the report of what finished ([`Report::interrupted`]).
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

/// A precondition the cluster did not meet: what the scenario needs and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skip {
    /// What the scenario needs of the cluster's state (never of the behaviour under test).
    pub precondition: String,
    /// What the cluster offered instead.
    pub seen: String,
}

/// A scenario's outcome: passed, failed, or skipped for an unmet precondition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A check did not hold, or the scenario stopped on an error.
    #[default]
    Fail,
    /// The cluster could not offer what the scenario needs; nothing was claimed.
    Skip,
}

impl Verdict {
    /// The word in the table: `pass`, `FAIL` or `skip`.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One scenario's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// What the scenario proves.
    pub proves: String,
    /// True only when it passed (a skipped scenario did not pass, nor fail).
    pub passed: bool,
    /// Set when the scenario was skipped: the unmet precondition and what was seen.
    #[serde(default)]
    pub skipped: Option<Skip>,
    /// `pass`, `fail` or `skip`, as [`ScenarioResult::verdict`] rules (recorded by
    /// [`ScenarioResult::settled`] for readers of report.json).
    #[serde(default)]
    pub outcome: Verdict,
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
    /// Pass, fail or skip: a failed check or an error fails the scenario even after a skip
    /// (the cleanup's lock check still counts).
    pub fn verdict(&self) -> Verdict {
        if self.error.is_some() || self.checks.iter().any(|c| !c.passed) {
            Verdict::Fail
        } else if self.skipped.is_some() {
            Verdict::Skip
        } else if self.passed {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    /// The result with [`ScenarioResult::outcome`] set from its checks, error and skip.
    pub fn settled(mut self) -> ScenarioResult {
        self.outcome = self.verdict();
        self
    }

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
    /// Scenario outcomes, of the scenarios that finished.
    pub scenarios: Vec<ScenarioResult>,
    /// The scenario in progress when this evidence was written (`None` once the run is over).
    #[serde(default)]
    pub running: Option<String>,
    /// Why the run stopped before its end (a signal, the deadline), naming the running scenario.
    #[serde(default)]
    pub interrupted: Option<String>,
}

impl Report {
    /// True when no scenario failed (skipped ones do not fail a run) and the run was not interrupted.
    pub fn passed(&self) -> bool {
        self.interrupted.is_none() && self.count(Verdict::Fail) == 0
    }

    /// How many finished scenarios ended with `verdict`.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.scenarios
            .iter()
            .filter(|s| s.verdict() == verdict)
            .count()
    }

    /// `N of M scenarios passed, S skipped, F failed` (plus the state of an unfinished run).
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} of {} scenarios passed, {} skipped, {} failed",
            self.count(Verdict::Pass),
            self.scenarios.len(),
            self.count(Verdict::Skip),
            self.count(Verdict::Fail)
        );
        if let Some(why) = &self.interrupted {
            out.push_str(&format!("; run interrupted: {why}"));
        } else if let Some(running) = &self.running {
            out.push_str(&format!("; still running: {running}"));
        }
        out
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report: a header, then one table with a row per pod (scenarios without pods get
/// one row), then every failing check with what was expected and seen.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sliceguard conformance\n");
    let _ = writeln!(out, "- cluster: {}", report.cluster);
    let _ = writeln!(out, "- inventory: {}", report.inventory);
    let _ = writeln!(out, "- started: {}", report.started);
    if let Some(why) = &report.interrupted {
        let _ = writeln!(out, "- **interrupted**: {}", cell(why));
    } else if let Some(running) = &report.running {
        let _ = writeln!(
            out,
            "- running now: {running} (this report is rewritten as scenarios end)"
        );
    }
    let _ = writeln!(out, "- result: {}\n", report.summary());
    let _ = writeln!(
        out,
        "| scenario | result | pod | node | devices | reasons | events |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for s in &report.scenarios {
        let result = match s.verdict() {
            Verdict::Fail => "**FAIL**",
            Verdict::Skip => "skipped",
            Verdict::Pass => "pass",
        };
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
            s.verdict().word(),
            s.seconds,
            s.proves
        );
    }
    let skips: Vec<&ScenarioResult> = report
        .scenarios
        .iter()
        .filter(|s| s.verdict() == Verdict::Skip)
        .collect();
    if !skips.is_empty() {
        let _ = writeln!(
            out,
            "\n## Skipped (the cluster could not offer what they need)\n"
        );
        for s in skips {
            if let Some(skip) = &s.skipped {
                let _ = writeln!(
                    out,
                    "- {}: needs {}; seen {}",
                    s.name,
                    cell(&skip.precondition),
                    cell(&skip.seen)
                );
            }
        }
    }
    let failures: Vec<&ScenarioResult> = report
        .scenarios
        .iter()
        .filter(|s| s.verdict() == Verdict::Fail)
        .collect();
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
        let detail = match (s.verdict(), s.failure(), &s.skipped) {
            (Verdict::Fail, Some(f), _) => f,
            (Verdict::Skip, _, Some(skip)) => {
                format!("SKIPPED: needs {}; seen {}", skip.precondition, skip.seen)
            }
            _ => format!("{} checks held", s.checks.len()),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:<6}  {:>4}  {:>6.2}  {}",
            s.name,
            s.verdict().word(),
            s.pods.len(),
            s.seconds,
            detail
        );
    }
    let _ = writeln!(out, "{}", report.summary());
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
    let failures = report.count(Verdict::Fail);
    let skipped = report.count(Verdict::Skip);
    let total: f64 = report.scenarios.iter().map(|s| s.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"sliceguard-conformance\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\">",
        report.scenarios.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"sliceguard-conformance\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\" timestamp=\"{}\">",
        report.scenarios.len(),
        xml_escape(&report.started)
    );
    let mut properties = format!(
        "<property name=\"cluster\" value=\"{}\"/>",
        xml_escape(&report.cluster)
    );
    if let Some(why) = &report.interrupted {
        let _ = write!(
            properties,
            "<property name=\"interrupted\" value=\"{}\"/>",
            xml_escape(why)
        );
    } else if let Some(running) = &report.running {
        let _ = write!(
            properties,
            "<property name=\"running\" value=\"{}\"/>",
            xml_escape(running)
        );
    }
    let _ = writeln!(out, "    <properties>{properties}</properties>");
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "    <testcase classname=\"conformance\" name=\"{}\" time=\"{:.3}\">",
            xml_escape(&s.name),
            s.seconds
        );
        if let (Verdict::Skip, Some(skip)) = (s.verdict(), &s.skipped) {
            let _ = writeln!(
                out,
                "      <skipped message=\"{}\"/>",
                xml_escape(&format!("needs {}; seen {}", skip.precondition, skip.seen))
            );
        }
        if s.verdict() == Verdict::Fail {
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
    if !snapshots.nodes.is_empty() {
        put("nodes.yaml", &list_yaml("Node", &snapshots.nodes)?)?;
    }
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
                    skipped: None,
                    outcome: Verdict::Fail,
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
                    skipped: None,
                    outcome: Verdict::Fail,
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
                ScenarioResult {
                    name: "placement".into(),
                    proves: "r".into(),
                    passed: false,
                    skipped: Some(Skip {
                        precondition: "a GPU node with room for <3> replicas".into(),
                        seen: "every GPU full".into(),
                    }),
                    outcome: Verdict::Fail,
                    checks: vec![],
                    pods: vec![],
                    error: None,
                    seconds: 0.1,
                },
            ],
            running: None,
            interrupted: None,
        }
    }

    #[test]
    fn three_outcomes_in_every_format() {
        let r = sample();
        let verdicts: Vec<Verdict> = r.scenarios.iter().map(|s| s.verdict()).collect();
        assert_eq!(verdicts, vec![Verdict::Pass, Verdict::Fail, Verdict::Skip]);
        assert_eq!(r.summary(), "1 of 3 scenarios passed, 1 skipped, 1 failed");
        let md = markdown(&r);
        assert!(md.contains("| placement | skipped | - |"), "{md}");
        assert!(
            md.contains(
                "- placement: needs a GPU node with room for <3> replicas; seen every GPU full"
            ),
            "{md}"
        );
        let xml = junit(&r);
        assert!(xml.contains("skipped=\"1\""), "{xml}");
        assert!(xml.contains("<skipped message=\"needs a GPU node with room for &lt;3&gt; replicas; seen every GPU full\"/>"), "{xml}");
        assert_eq!(xml.matches("<failure ").count(), 1);
        let table = terminal_table(&r);
        assert!(
            table.lines().any(|l| l.starts_with("placement")
                && l.contains("skip")
                && l.contains("SKIPPED: needs")),
            "{table}"
        );
        let settled: Vec<ScenarioResult> = r
            .scenarios
            .iter()
            .cloned()
            .map(ScenarioResult::settled)
            .collect();
        let json: Value = serde_json::to_value(&settled).unwrap();
        assert_eq!(json[2]["skipped"]["seen"], "every GPU full");
        let outcomes: Vec<&Value> = (0..3).map(|i| &json[i]["outcome"]).collect();
        assert_eq!(outcomes, ["pass", "fail", "skip"]);
        // A skip alone does not fail the run; a failure does; a lock check failing after a skip fails it.
        let mut only_skip = r.clone();
        only_skip.scenarios.retain(|s| s.name != "sharing");
        assert!(only_skip.passed());
        assert!(!r.passed());
        only_skip.scenarios[1].checks.push(Check {
            what: "no lock".into(),
            passed: false,
            expected: "none".into(),
            seen: "one".into(),
        });
        assert_eq!(only_skip.scenarios[1].verdict(), Verdict::Fail);
    }

    #[test]
    fn an_interrupted_report_names_the_running_scenario() {
        let mut r = sample();
        r.scenarios.truncate(1);
        r.running = Some("sharing".into());
        assert!(markdown(&r).contains("running now: sharing"));
        assert!(junit(&r).contains("<property name=\"running\" value=\"sharing\"/>"));
        r.interrupted = Some("SIGTERM while running sharing".into());
        assert!(!r.passed(), "an interrupted run did not pass");
        let md = markdown(&r);
        assert!(
            md.contains("**interrupted**: SIGTERM while running sharing"),
            "{md}"
        );
        assert!(junit(&r).contains("value=\"SIGTERM while running sharing\""));
    }

    #[test]
    fn markdown_has_one_row_per_pod_and_the_failure() {
        let md = markdown(&sample());
        assert!(md.contains("| fractional | pass | f (Running) | n1 | GPU-1 3000MiB/30% | - |"));
        assert!(md.contains("find fit node(n1)\\|x"), "pipes are escaped");
        assert!(md.contains("| sharing | **FAIL** | - |"));
        assert!(md.contains("expected 10 Running; seen 5 Running & 5 Pending"));
        assert!(md.contains("1 of 3 scenarios passed, 1 skipped, 1 failed"));
    }

    #[test]
    fn junit_escapes_and_counts() {
        let xml = junit(&sample());
        assert!(xml.contains("tests=\"3\" failures=\"1\""));
        assert!(xml.contains(
            "ten &lt;pods&gt; Running: expected 10 Running; seen 5 Running &amp; 5 Pending"
        ));
        assert_eq!(xml.matches("<testcase ").count(), 3);
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
