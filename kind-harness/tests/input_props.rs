//! The CSV parsers never panic, and every error names the file and a line (and, for a bad value,
//! the column), whatever the input: arbitrary bytes, and valid files with one field corrupted.

use kind_harness::trace::input::{InputError, parse_nodes, parse_pods};
use proptest::prelude::*;
use std::path::Path;

const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos";
const NODE_HEADER: &str = "sn,cpu_milli,memory_mib,gpu,model";

fn names_the_file(e: &InputError, file: &str) -> bool {
    e.to_string().starts_with(file)
}

fn valid_pod_row(i: usize, kind: u8) -> String {
    match kind % 4 {
        0 => format!("p{i},12000,16384,1,1000,,LS"),
        1 => format!("p{i},6000,12288,1,460,V100M16|V100M32,BE"),
        2 => format!("p{i},4000,2048,0,0,,LS"),
        _ => format!("p{i},64000,262144,8,1000,,LS"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Err(e) = parse_pods(Path::new("pods.csv"), &data) {
            prop_assert!(names_the_file(&e, "pods.csv"), "{e}");
        }
        if let Err(e) = parse_nodes(Path::new("nodes.csv"), &data) {
            prop_assert!(names_the_file(&e, "nodes.csv"), "{e}");
        }
    }

    #[test]
    fn arbitrary_rows_under_a_valid_header_never_panic(
        rows in proptest::collection::vec("[a-z0-9|,.\"-]{0,40}", 0..6)
    ) {
        let text = format!("{POD_HEADER}\n{}\n", rows.join("\n"));
        match parse_pods(Path::new("pods.csv"), text.as_bytes()) {
            Ok(pods) => prop_assert!(!pods.is_empty()),
            Err(e) => prop_assert!(names_the_file(&e, "pods.csv"), "{e}"),
        }
        let text = format!("{NODE_HEADER}\n{}\n", rows.join("\n"));
        if let Err(e) = parse_nodes(Path::new("nodes.csv"), text.as_bytes()) {
            prop_assert!(names_the_file(&e, "nodes.csv"), "{e}");
        }
    }

    #[test]
    fn a_corrupted_field_is_reported_at_its_line_and_column(
        kinds in proptest::collection::vec(any::<u8>(), 1..8),
        pick in any::<prop::sample::Index>(),
        column in 1usize..5,
        junk in "[a-z]{1,5}|-[0-9]{1,3}|[0-9]{20}",
    ) {
        let mut rows: Vec<String> = kinds.iter().enumerate().map(|(i, k)| valid_pod_row(i, *k)).collect();
        let bad = pick.index(rows.len());
        let mut fields: Vec<String> = rows[bad].split(',').map(String::from).collect();
        fields[column] = junk.clone();
        rows[bad] = fields.join(",");
        let text = format!("{POD_HEADER}\n{}\n", rows.join("\n"));
        let e = parse_pods(Path::new("trace/pods.csv"), text.as_bytes()).unwrap_err();
        let expected = format!("trace/pods.csv:{}: column {}", bad + 2, column + 1);
        prop_assert!(e.to_string().starts_with(&expected), "{e} (expected {expected})");
    }
}
