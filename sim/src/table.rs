//! Server-side printing: the `meta.k8s.io/v1` `Table`s kubectl asks for, with the columns a real API
//! server prints for pods (`-o wide` included), nodes, events and namespaces.

use crate::store::Resource;
use serde_json::{Value, json};

fn column(name: &str, kind: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" }, "description": "", "priority": priority})
}

/// Kubernetes' short human duration (`5s`, `3m2s`, `4h`, `12d`).
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn age(object: &Value, now: jiff::Timestamp) -> String {
    object["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(
            || "<unknown>".into(),
            |t| human_age(now.duration_since(t).as_secs()),
        )
}

fn or_none(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if !s.is_empty() => json!(s),
        _ => json!("<none>"),
    }
}

fn pod_row(p: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let containers = p["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let mut status = p["status"]["reason"]
        .as_str()
        .or(p["status"]["phase"].as_str())
        .unwrap_or("Unknown")
        .to_string();
    if p["metadata"]["deletionTimestamp"].is_string() {
        status = "Terminating".into();
    }
    vec![
        p["metadata"]["name"].clone(),
        json!(format!("{ready}/{containers}")),
        json!(status),
        json!(restarts),
        json!(age(p, now)),
        or_none(&p["status"]["podIP"]),
        or_none(&p["spec"]["nodeName"]),
        json!("<none>"),
        json!("<none>"),
    ]
}

fn node_row(n: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let ready = n["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map_or("Unknown", |c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        });
    let status = if n["spec"]["unschedulable"] == true {
        format!("{ready},SchedulingDisabled")
    } else {
        ready.to_string()
    };
    let roles: Vec<String> = n["metadata"]["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    vec![
        n["metadata"]["name"].clone(),
        json!(status),
        json!(if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        }),
        json!(age(n, now)),
        json!("v1.32.0-sliceguard-sim"),
    ]
}

fn event_row(e: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let object = format!(
        "{}/{}",
        e["involvedObject"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_lowercase(),
        e["involvedObject"]["name"].as_str().unwrap_or("")
    );
    vec![
        json!(age(e, now)),
        e["type"].clone(),
        e["reason"].clone(),
        json!(object),
        e["message"].clone(),
    ]
}

/// The Table for `items` of `resource`.
pub fn table(resource: Resource, items: &[Value], rv: u64, now: jiff::Timestamp) -> Value {
    let (columns, rows): (Vec<Value>, Vec<Vec<Value>>) = match resource {
        Resource::Pods => (
            vec![
                column("Name", "string", 0),
                column("Ready", "string", 0),
                column("Status", "string", 0),
                column("Restarts", "string", 0),
                column("Age", "string", 0),
                column("IP", "string", 1),
                column("Node", "string", 1),
                column("Nominated Node", "string", 1),
                column("Readiness Gates", "string", 1),
            ],
            items.iter().map(|p| pod_row(p, now)).collect(),
        ),
        Resource::Nodes => (
            vec![
                column("Name", "string", 0),
                column("Status", "string", 0),
                column("Roles", "string", 0),
                column("Age", "string", 0),
                column("Version", "string", 0),
            ],
            items.iter().map(|n| node_row(n, now)).collect(),
        ),
        Resource::Events => (
            vec![
                column("Last Seen", "string", 0),
                column("Type", "string", 0),
                column("Reason", "string", 0),
                column("Object", "string", 0),
                column("Message", "string", 0),
            ],
            items.iter().map(|e| event_row(e, now)).collect(),
        ),
        Resource::Deployments => (
            vec![
                column("Name", "string", 0),
                column("Ready", "string", 0),
                column("Up-to-date", "string", 0),
                column("Available", "string", 0),
                column("Age", "string", 0),
            ],
            items
                .iter()
                .map(|d| {
                    let count = |field: &str| d["status"][field].as_i64().unwrap_or(0);
                    let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1);
                    vec![
                        d["metadata"]["name"].clone(),
                        json!(format!("{}/{wanted}", count("readyReplicas"))),
                        json!(count("updatedReplicas")),
                        json!(count("availableReplicas")),
                        json!(age(d, now)),
                    ]
                })
                .collect(),
        ),
        Resource::Namespaces => (
            vec![
                column("Name", "string", 0),
                column("Status", "string", 0),
                column("Age", "string", 0),
            ],
            items
                .iter()
                .map(|n| {
                    vec![
                        n["metadata"]["name"].clone(),
                        json!("Active"),
                        json!(age(n, now)),
                    ]
                })
                .collect(),
        ),
        Resource::Leases => (
            vec![
                column("Name", "string", 0),
                column("Holder", "string", 0),
                column("Age", "string", 0),
            ],
            items
                .iter()
                .map(|l| {
                    vec![
                        l["metadata"]["name"].clone(),
                        l["spec"]["holderIdentity"].clone(),
                        json!(age(l, now)),
                    ]
                })
                .collect(),
        ),
    };
    let rows: Vec<Value> = rows
        .into_iter()
        .zip(items)
        .map(|(cells, item)| {
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": item["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": columns, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(185), "3m5s");
        assert_eq!(human_age(3600), "60m");
        assert_eq!(human_age(4 * 3600 + 120), "4h2m");
        assert_eq!(human_age(30 * 3600), "30h");
        assert_eq!(human_age(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_age(40 * 86400), "40d");
    }

    #[test]
    fn pod_rows_show_node_and_status() {
        let p = json!({"metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
                       "spec": {"containers": [{"name": "c"}], "nodeName": "n1"},
                       "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 0}]}});
        let t = table(
            Resource::Pods,
            &[p],
            7,
            "2026-01-01T00:00:05Z".parse().unwrap(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "p", "1/1", "Running", 0, "5s", "<none>", "n1", "<none>", "<none>"
            ])
        );
        assert_eq!(t["metadata"]["resourceVersion"], "7");
    }
}
