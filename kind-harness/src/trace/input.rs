//! Reading the trace's CSV files: the node list (`sn,cpu_milli,memory_mib,gpu,model`) and a pod list
//! (`name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...]`), as published with the ATC'23 FGD
//! paper (see `shared/data/alibaba-openb/README.md`).
//!
//! Columns are found by their header name, so extra columns (qos, times) and the 5-column `multigpu*`
//! files read the same way. Every problem is an [`InputError`] naming the file, the line and, for a bad
//! value, the column by number and name; nothing here panics, whatever the bytes (a property test
//! feeds arbitrary input).
//!
//! Rules beyond "is a number":
//! - a pod with `num_gpu` = 0 must have `gpu_milli` = 0, and one with GPUs must have `gpu_milli` in
//!   1..=1000;
//! - a multi-GPU pod takes whole GPUs (`gpu_milli` = 1000), as in every file of the trace;
//! - a sharing pod's `gpu_milli` must be a multiple of 10, because it becomes whole percentages
//!   (`nvidia.com/gpucores` and `nvidia.com/gpumem-percentage` = `gpu_milli`/10);
//! - `gpu_spec` is a `|` list of models; entries are trimmed, empty ones skipped, repeats dropped;
//! - a node with GPUs needs a model; names are unique in each file.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest GPU count accepted on one node or in one pod (the trace has at most 8).
pub const MAX_GPUS: u32 = 128;

/// One GPU node (or CPU-only node) of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// `sn`.
    pub name: String,
    /// CPU capacity in millicores.
    pub cpu_milli: u64,
    /// Host memory in MiB.
    pub memory_mib: u64,
    /// Number of GPUs (0 for a CPU-only node).
    pub gpus: u32,
    /// GPU model (empty for a CPU-only node).
    pub model: String,
}

/// One task of a pod list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRow {
    /// `name`.
    pub name: String,
    /// CPU request in millicores.
    pub cpu_milli: u64,
    /// Host memory request in MiB.
    pub memory_mib: u64,
    /// GPUs requested (0 for a CPU-only task).
    pub num_gpu: u32,
    /// Share of each GPU in thousandths (1000 = whole GPU; 0 for a CPU-only task).
    pub gpu_milli: u32,
    /// Allowed GPU models; empty means any.
    pub gpu_spec: Vec<String>,
}

impl PodRow {
    /// Total GPU request in milli-GPU (`num_gpu × gpu_milli`).
    pub fn gpu_request_milli(&self) -> u64 {
        u64::from(self.num_gpu) * u64::from(self.gpu_milli)
    }

    /// True for a task sharing one GPU (`num_gpu` = 1, `gpu_milli` < 1000).
    pub fn is_sharing(&self) -> bool {
        self.num_gpu == 1 && self.gpu_milli < 1000
    }

    /// True when `model` satisfies the task's `gpu_spec` (exact, case-sensitive model names).
    pub fn allows_model(&self, model: &str) -> bool {
        self.gpu_spec.is_empty() || self.gpu_spec.iter().any(|m| m == model)
    }
}

/// What went wrong reading an input file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file cannot be read.
    #[error("{file}: cannot read: {source}", file = .file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The header lacks a required column.
    #[error("{file}:1: the header has no column {column:?} (columns: {found})", file = .file.display())]
    MissingColumn {
        /// The file.
        file: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The header as read.
        found: String,
    },
    /// A record cannot be split into fields (wrong field count, bad UTF-8, bad quoting).
    #[error("{file}:{line}: {problem}", file = .file.display())]
    Record {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A value is not acceptable.
    #[error("{file}:{line}: column {column} ({name}): {problem}", file = .file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// 1-based column number.
        column: usize,
        /// The column's header name.
        name: &'static str,
        /// What is wrong, quoting the value.
        problem: String,
    },
    /// The file has a header but no data row.
    #[error("{file}: no data rows", file = .file.display())]
    Empty {
        /// The file.
        file: PathBuf,
    },
}

/// Reads and parses a node file.
pub fn read_nodes(file: &Path) -> Result<Vec<NodeRow>, InputError> {
    let bytes = std::fs::read(file).map_err(|source| InputError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    parse_nodes(file, &bytes)
}

/// Reads and parses a pod file.
pub fn read_pods(file: &Path) -> Result<Vec<PodRow>, InputError> {
    let bytes = std::fs::read(file).map_err(|source| InputError::Io {
        file: file.to_path_buf(),
        source,
    })?;
    parse_pods(file, &bytes)
}

/// A CSV file being read: the file name for messages and the header's column positions.
struct Table<'a> {
    file: &'a Path,
    reader: csv::Reader<&'a [u8]>,
    header: Vec<String>,
}

/// The position of a record and its fields, for messages.
struct Row<'t> {
    file: &'t Path,
    line: u64,
    record: csv::StringRecord,
}

impl<'a> Table<'a> {
    fn open(file: &'a Path, data: &'a [u8]) -> Result<Self, InputError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(data);
        let header = reader
            .headers()
            .map_err(|e| record_error(file, &e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        Ok(Table {
            file,
            reader,
            header,
        })
    }

    fn column(&self, name: &'static str) -> Result<usize, InputError> {
        self.optional_column(name)
            .ok_or_else(|| InputError::MissingColumn {
                file: self.file.to_path_buf(),
                column: name,
                found: self.header.join(","),
            })
    }

    fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    fn rows(&mut self) -> impl Iterator<Item = Result<Row<'a>, InputError>> + '_ {
        let file = self.file;
        self.reader.records().map(move |r| match r {
            Ok(record) => Ok(Row {
                file,
                line: record.position().map_or(0, csv::Position::line),
                record,
            }),
            Err(e) => Err(record_error(file, &e)),
        })
    }
}

fn record_error(file: &Path, e: &csv::Error) -> InputError {
    let line = e.position().map_or(0, csv::Position::line);
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "field {} is not valid UTF-8 ({err})",
            err.field().saturating_add(1)
        ),
        _ => e.to_string(),
    };
    InputError::Record {
        file: file.to_path_buf(),
        line,
        problem,
    }
}

impl Row<'_> {
    fn field_error(&self, column: usize, name: &'static str, problem: String) -> InputError {
        InputError::Field {
            file: self.file.to_path_buf(),
            line: self.line,
            column: column + 1,
            name,
            problem,
        }
    }

    fn text(&self, column: usize) -> &str {
        self.record.get(column).unwrap_or("").trim()
    }

    fn name(&self, column: usize, name: &'static str) -> Result<String, InputError> {
        let value = self.text(column);
        if value.is_empty() {
            return Err(self.field_error(column, name, "is empty".into()));
        }
        Ok(value.to_string())
    }

    fn number(&self, column: usize, name: &'static str, max: u64) -> Result<u64, InputError> {
        let value = self.text(column);
        match value.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            Ok(n) => Err(self.field_error(column, name, format!("{n} is larger than {max}"))),
            Err(_) => Err(self.field_error(
                column,
                name,
                format!("{value:?} is not a non-negative integer"),
            )),
        }
    }
}

/// Largest CPU (millicores) or memory (MiB) value accepted: large enough for any machine, small
/// enough that sums over a fleet of them cannot overflow.
const MAX_AMOUNT: u64 = 1 << 40;

/// Parses a node file's bytes; `file` is only used in messages.
pub fn parse_nodes(file: &Path, data: &[u8]) -> Result<Vec<NodeRow>, InputError> {
    let mut table = Table::open(file, data)?;
    let c_name = table.column("sn")?;
    let c_cpu = table.column("cpu_milli")?;
    let c_mem = table.column("memory_mib")?;
    let c_gpu = table.column("gpu")?;
    let c_model = table.column("model")?;
    let mut seen = HashSet::new();
    let mut nodes = Vec::new();
    for row in table.rows() {
        let row = row?;
        let name = row.name(c_name, "sn")?;
        let cpu_milli = row.number(c_cpu, "cpu_milli", MAX_AMOUNT)?;
        let memory_mib = row.number(c_mem, "memory_mib", MAX_AMOUNT)?;
        let gpus = row.number(c_gpu, "gpu", u64::from(MAX_GPUS))? as u32;
        let model = row.text(c_model).to_string();
        if gpus > 0 && model.is_empty() {
            return Err(row.field_error(c_model, "model", "is empty on a node with GPUs".into()));
        }
        if model.contains([',', ':', ';']) {
            return Err(row.field_error(
                c_model,
                "model",
                format!("{model:?} contains ',', ':' or ';'"),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(row.field_error(c_name, "sn", format!("node {name:?} is listed twice")));
        }
        nodes.push(NodeRow {
            name,
            cpu_milli,
            memory_mib,
            gpus,
            model,
        });
    }
    if nodes.is_empty() {
        return Err(InputError::Empty {
            file: file.to_path_buf(),
        });
    }
    Ok(nodes)
}

/// Parses a pod file's bytes; `file` is only used in messages.
pub fn parse_pods(file: &Path, data: &[u8]) -> Result<Vec<PodRow>, InputError> {
    let mut table = Table::open(file, data)?;
    let c_name = table.column("name")?;
    let c_cpu = table.column("cpu_milli")?;
    let c_mem = table.column("memory_mib")?;
    let c_num = table.column("num_gpu")?;
    let c_milli = table.column("gpu_milli")?;
    let c_spec = table.optional_column("gpu_spec");
    let mut seen = HashSet::new();
    let mut pods = Vec::new();
    for row in table.rows() {
        let row = row?;
        let name = row.name(c_name, "name")?;
        let cpu_milli = row.number(c_cpu, "cpu_milli", MAX_AMOUNT)?;
        let memory_mib = row.number(c_mem, "memory_mib", MAX_AMOUNT)?;
        let num_gpu = row.number(c_num, "num_gpu", u64::from(MAX_GPUS))? as u32;
        let gpu_milli = row.number(c_milli, "gpu_milli", 1000)? as u32;
        let bad_milli = |problem: &str| {
            row.field_error(
                c_milli,
                "gpu_milli",
                format!("{gpu_milli} with num_gpu {num_gpu}: {problem}"),
            )
        };
        if num_gpu == 0 && gpu_milli != 0 {
            return Err(bad_milli("a task without GPUs must have gpu_milli 0"));
        }
        if num_gpu > 0 && gpu_milli == 0 {
            return Err(bad_milli("a task with GPUs needs gpu_milli of 1 to 1000"));
        }
        if num_gpu > 1 && gpu_milli != 1000 {
            return Err(bad_milli(
                "a multi-GPU task must take whole GPUs (gpu_milli 1000)",
            ));
        }
        if !gpu_milli.is_multiple_of(10) {
            return Err(bad_milli(
                "not a whole percentage (the share becomes gpucores = gpu_milli/10)",
            ));
        }
        let gpu_spec = match c_spec {
            None => Vec::new(),
            Some(c) => {
                let mut unique = BTreeSet::new();
                let mut spec = Vec::new();
                for model in row.text(c).split('|').map(str::trim) {
                    if !model.is_empty() && unique.insert(model) {
                        spec.push(model.to_string());
                    }
                }
                spec
            }
        };
        if num_gpu == 0 && !gpu_spec.is_empty() {
            return Err(row.field_error(
                c_spec.unwrap_or(0),
                "gpu_spec",
                "a task without GPUs cannot constrain the GPU model".into(),
            ));
        }
        if !seen.insert(name.clone()) {
            return Err(row.field_error(c_name, "name", format!("pod {name:?} is listed twice")));
        }
        pods.push(PodRow {
            name,
            cpu_milli,
            memory_mib,
            num_gpu,
            gpu_milli,
            gpu_spec,
        });
    }
    if pods.is_empty() {
        return Err(InputError::Empty {
            file: file.to_path_buf(),
        });
    }
    Ok(pods)
}

/// GPU memory per device in MiB, from the simulator's table quoted in the data README (G2/G3 are
/// undisclosed; 20000/30000 are the simulator's placeholders). Shares are percentages, so the size
/// only matters for how HAMi rounds `total × pct / 100`. Unknown models get 16384 MiB.
pub fn device_memory_mib(model: &str) -> u32 {
    match model {
        "T4" => 15109,
        "P100" => 16280,
        "V100M16" => 16160,
        "V100M32" => 32510,
        "A10" => 22731,
        "G1" => 1000,
        "G2" => 20000,
        "G3" => 30000,
        _ => 16384,
    }
}

/// A short description of a fleet: nodes, GPUs, cores, memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetTotals {
    /// Nodes.
    pub nodes: usize,
    /// GPUs.
    pub gpus: u64,
    /// CPU millicores.
    pub cpu_milli: u64,
    /// Host memory MiB.
    pub memory_mib: u64,
}

impl FleetTotals {
    /// Sums a node list.
    pub fn of(nodes: &[NodeRow]) -> Self {
        FleetTotals {
            nodes: nodes.len(),
            gpus: nodes.iter().map(|n| u64::from(n.gpus)).sum(),
            cpu_milli: nodes.iter().map(|n| n.cpu_milli).sum(),
            memory_mib: nodes.iter().map(|n| n.memory_mib).sum(),
        }
    }
}

impl fmt::Display for FleetTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, {} GPUs, {} cores, {} GiB",
            self.nodes,
            self.gpus,
            self.cpu_milli / 1000,
            self.memory_mib / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(text: &str) -> Result<Vec<NodeRow>, InputError> {
        parse_nodes(Path::new("nodes.csv"), text.as_bytes())
    }

    fn pods(text: &str) -> Result<Vec<PodRow>, InputError> {
        parse_pods(Path::new("pods.csv"), text.as_bytes())
    }

    const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos\n";

    #[test]
    fn reads_the_published_layouts() {
        let n =
            nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\nc0,32000,65536,0,\n")
                .unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!((n[0].gpus, n[0].model.as_str()), (2, "P100"));
        assert_eq!((n[1].gpus, n[1].model.as_str()), (0, ""));

        let p = pods(&format!(
            "{POD_HEADER}p0,12000,16384,1,1000,,LS\np1,6000,12288,1,460,V100M16|V100M32|V100M32,BE\np2,4000,0,0,0,,LS\n"
        ))
        .unwrap();
        assert_eq!(p[1].gpu_spec, ["V100M16", "V100M32"]);
        assert!(p[1].is_sharing() && !p[0].is_sharing());
        assert_eq!(p[0].gpu_request_milli(), 1000);
        assert!(p[1].allows_model("V100M32") && !p[1].allows_model("V100"));
        assert!(p[0].allows_model("anything"));

        let five = pods("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1,2,8,1000\n").unwrap();
        assert_eq!(five[0].gpu_request_milli(), 8000);
        assert!(five[0].gpu_spec.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = pods(&format!(
            "{POD_HEADER}p0,1,2,1,1000,,LS\np1,x,2,1,1000,,LS\n"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pods.csv:3: column 2 (cpu_milli): \"x\" is not a non-negative integer"
        );
        let e = pods(&format!("{POD_HEADER}p0,1,2,2,500,,LS\n")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pods.csv:2: column 5 (gpu_milli): 500 with num_gpu 2"),
            "{e}"
        );
        let e = pods(&format!("{POD_HEADER}p0,1,2,1,455,,LS\n")).unwrap_err();
        assert!(e.to_string().contains("whole percentage"), "{e}");
        let e = pods(&format!("{POD_HEADER}p0,1,2,0,10,,LS\n")).unwrap_err();
        assert!(e.to_string().contains("without GPUs"), "{e}");
        let e = pods(&format!("{POD_HEADER}p0,1,2,1,0,,LS\n")).unwrap_err();
        assert!(e.to_string().contains("1 to 1000"), "{e}");
        let e = pods(&format!("{POD_HEADER}p0,1,2,1,1001,,LS\n")).unwrap_err();
        assert!(e.to_string().contains("larger than 1000"), "{e}");
        let e = pods(&format!("{POD_HEADER}p0,1,2,1,100,,LS\np0,1,2,1,100,,LS\n")).unwrap_err();
        assert!(
            e.to_string().starts_with("pods.csv:3: column 1 (name)"),
            "{e}"
        );
        let e = pods(&format!("{POD_HEADER}p0,1,2,0,0,T4,LS\n")).unwrap_err();
        assert!(
            e.to_string().starts_with("pods.csv:2: column 6 (gpu_spec)"),
            "{e}"
        );
        let e = pods(&format!("{POD_HEADER}p0,1,2\n")).unwrap_err();
        assert_eq!(e.to_string(), "pods.csv:2: 3 fields where the header has 7");
        let e = pods("name,cpu_milli,memory_mib,gpu_milli\n").unwrap_err();
        assert!(e.to_string().contains("no column \"num_gpu\""), "{e}");
        assert!(matches!(pods(POD_HEADER), Err(InputError::Empty { .. })));

        let e = nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,2,\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "nodes.csv:2: column 5 (model): is empty on a node with GPUs"
        );
        let e = nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,999,T4\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("column 4 (gpu): 999 is larger than 128"),
            "{e}"
        );
        let e = nodes("sn,cpu_milli,memory_mib,gpu,model\n,1,1,1,T4\n").unwrap_err();
        assert!(e.to_string().contains("column 1 (sn): is empty"), "{e}");
        let e = nodes("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,1,T4\nn0,1,1,1,T4\n").unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let e = parse_pods(
            Path::new("p.csv"),
            b"name,cpu_milli,memory_mib,num_gpu,gpu_milli\np\xff,1,1,0,0\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.csv:2: field 1 is not valid UTF-8"),
            "{e}"
        );
        let e = read_pods(Path::new("/nonexistent/pods.csv")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/pods.csv: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn fleet_totals() {
        let n = nodes(
            "sn,cpu_milli,memory_mib,gpu,model\na,96000,393216,8,G2\nb,8000,32768,1,V100M16\n",
        )
        .unwrap();
        let t = FleetTotals::of(&n);
        assert_eq!(
            (t.nodes, t.gpus, t.cpu_milli, t.memory_mib),
            (2, 9, 104000, 425984)
        );
        assert_eq!(t.to_string(), "2 nodes, 9 GPUs, 104 cores, 416 GiB");
        assert_eq!(device_memory_mib("T4"), 15109);
        assert_eq!(device_memory_mib("H100"), 16384);
    }
}
