//! Project layout rules: modules use only the module API, every module claim has an
//! `xeps/` record, and the example configuration stays valid and complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_module_api_and_events() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("modules"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                assert!(
                    rest.starts_with("module_api") || rest.starts_with("events"),
                    "{}:{}: modules may only use crate::module_api and crate::events: {line}",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}

fn xep_records() -> Vec<toml::Table> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("xeps");
    let mut records = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            records.push(toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap());
        }
    }
    records
}

#[test]
fn every_claimed_specification_has_a_record_and_records_name_real_modules() {
    let records = xep_records();
    let numbers: Vec<&str> = records.iter().map(|r| r["number"].as_str().unwrap()).collect();
    for module in starling::modules::ALL {
        for claim in module.xeps {
            assert!(numbers.contains(claim), "module {} claims {claim}, which has no record in xeps/", module.name);
        }
    }
    for record in &records {
        for field in ["number", "title", "version", "status", "since", "modules", "notes", "tests"] {
            assert!(record.contains_key(field), "{record:?} lacks {field}");
        }
        let status = record["status"].as_str().unwrap();
        assert!(["complete", "partial", "planned", "wontfix"].contains(&status), "{status}");
        for module in record["modules"].as_array().unwrap() {
            let name = module.as_str().unwrap();
            assert!(starling::modules::ALL.iter().any(|m| m.name == name), "record names unknown module {name}");
        }
        for script in record["tests"].as_array().unwrap() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script.as_str().unwrap());
            assert!(path.is_file(), "record {} lists missing test {}", record["number"], path.display());
        }
    }
}

#[test]
fn the_example_configuration_is_valid_and_mentions_every_option() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join("config.example.toml")).unwrap();
    let checks = starling::modules::config_checks();
    let config = starling::config::Config::parse(&text, &checks).unwrap();
    let defaults = toml::Table::try_from(starling::config::Config::default()).unwrap();
    for (section, value) in &defaults {
        let Some(table) = value.as_table() else { continue };
        for (key, default) in table {
            if default.is_table() {
                continue; // maps such as tls.certs are documented by a commented example
            }
            assert!(
                text.contains(&format!("\n{key} = ")) || text.contains(&format!("# {key} = ")),
                "config.example.toml does not document {section}.{key}"
            );
        }
    }
    for module in starling::modules::ALL {
        assert!(
            text.contains(&format!("[modules.{}]", module.name)),
            "config.example.toml lacks [modules.{}]",
            module.name
        );
    }
    assert_eq!(config.server.domains, vec!["localhost".to_string()]);
}
