//! Project layout rules: modules use only the module API, every module claim has an
//! `xeps/` record, records and conformance scripts point at each other, `xeps/starling.doap` is
//! generated from the records, and the example configuration stays valid and complete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

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

/// The `xeps/*.toml` records in file-name order: RFCs first, then XEPs by number. A record's
/// file is named after its number (`RFC 6121` in `rfc-6121.toml`), which is how the conformance
/// runner finds it.
fn xep_records() -> Vec<toml::Table> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root().join("xeps"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut records = Vec::new();
    for path in paths {
        let record: toml::Table = toml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let number = record["number"].as_str().unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap();
        assert_eq!(stem, number.to_lowercase().replace(' ', "-"), "{} holds the record of {number}", path.display());
        records.push(record);
    }
    records
}

fn field<'a>(record: &'a toml::Table, name: &str) -> &'a str {
    record[name].as_str().unwrap()
}

fn listed_tests(record: &toml::Table) -> Vec<&str> {
    record["tests"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect()
}

/// A `## xep:` item in the spelling of a record's `number`: `0199`, `199`, `XEP-0199` and
/// `xep 0199` give `XEP-0199`; `RFC 6121` and `rfc6121` give `RFC 6121`. `None` if it is
/// neither.
fn spec_number(item: &str) -> Option<String> {
    let compact: String = item.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_uppercase();
    let (prefix, digits) = match compact.strip_prefix("RFC") {
        Some(digits) => ("RFC ", digits.to_owned()),
        None => ("XEP-", compact.strip_prefix("XEP").unwrap_or(&compact).trim_start_matches('-').to_owned()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(if prefix == "RFC " { format!("RFC {digits}") } else { format!("XEP-{digits:0>4}") })
}

#[test]
fn xep_tags_are_read_in_every_spelling() {
    for (item, want) in [
        ("0199", Some("XEP-0199")),
        ("199", Some("XEP-0199")),
        ("XEP-0199", Some("XEP-0199")),
        ("xep 0199", Some("XEP-0199")),
        ("RFC 6121", Some("RFC 6121")),
        ("rfc6121", Some("RFC 6121")),
        ("RFC", None),
        ("XEP-", None),
        ("ping", None),
    ] {
        assert_eq!(spec_number(item).as_deref(), want, "{item}");
    }
}

/// A conformance script: its repository-relative path and the items of its `## xep:` tags.
struct Script {
    path: String,
    xeps: Vec<String>,
}

/// Every `.scs` file under `conformance/<dir>`, sorted by path.
fn conformance_scripts(dir: &str) -> Vec<Script> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if !dir.is_dir() {
            return; // git keeps no empty directories, so `pending/` may be missing
        }
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "scs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&root().join("conformance").join(dir), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let xeps = text
                .lines()
                .filter_map(|line| line.trim().strip_prefix("##")?.split_once(':'))
                .filter(|(tag, _)| tag.trim().eq_ignore_ascii_case("xep"))
                .flat_map(|(_, value)| value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned))
                .collect();
            let relative = path.strip_prefix(root()).unwrap().to_str().unwrap().replace('\\', "/");
            Script { path: relative, xeps }
        })
        .collect()
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
        for test in listed_tests(record) {
            let path = root().join(test);
            assert!(path.is_file(), "record {} lists missing test {}", record["number"], path.display());
        }
    }
}

#[test]
fn script_tags_name_records_and_records_list_their_scripts() {
    let records = xep_records();
    let pending = conformance_scripts("pending");
    for script in conformance_scripts("scripts").iter().chain(&pending) {
        for item in &script.xeps {
            let number = spec_number(item)
                .unwrap_or_else(|| panic!("{}: `## xep: {item}` is neither a XEP number nor an RFC", script.path));
            let record = records
                .iter()
                .find(|r| field(r, "number") == number)
                .unwrap_or_else(|| panic!("{}: `## xep: {item}` has no record in xeps/", script.path));
            // Pending scripts show deviations, so they do not count as coverage.
            if !script.path.starts_with("conformance/pending/") {
                assert!(
                    listed_tests(record).contains(&script.path.as_str()),
                    "{} is tagged {number} but not in the tests of its record; add it there",
                    script.path
                );
            }
        }
    }
}

/// Complete records that no conformance script can cover, with the reason; they list Rust tests
/// instead. A script's `Name connects` negotiates the whole stream before its first action, so
/// stream features and SASL are out of its reach.
const NOT_COVERABLE_BY_SCRIPTS: &[(&str, &str)] =
    &[("XEP-0440", "channel-binding types are a stream feature, negotiated before a script starts")];

#[test]
fn complete_records_list_a_conformance_script() {
    let records = xep_records();
    for (number, why) in NOT_COVERABLE_BY_SCRIPTS {
        let record = records.iter().find(|r| field(r, "number") == *number);
        assert!(record.is_some_and(|r| field(r, "status") == "complete"), "{number} ({why}) is no complete record");
    }
    for record in records.iter().filter(|r| field(r, "status") == "complete") {
        let number = field(record, "number");
        let tests = listed_tests(record);
        let is_script = |t: &&str| t.starts_with("conformance/scripts/") && t.ends_with(".scs");
        if NOT_COVERABLE_BY_SCRIPTS.iter().any(|(n, _)| *n == number) {
            assert!(tests.iter().any(|t| t.ends_with(".rs")), "record {number} is complete but lists no Rust test");
        } else {
            assert!(
                tests.iter().any(|t| is_script(t) && root().join(t).is_file()),
                "record {number} is complete but lists no conformance script under conformance/scripts/"
            );
        }
    }
}

const DOAP_PATH: &str = "xeps/starling.doap";
const DOAP_NS: &str = "http://usefulinc.com/ns/doap#";
const RDF_NS: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const XMPP_DOAP_NS: &str = "https://linkmauve.fr/ns/xmpp-doap#";

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn rfc_url(number: &str) -> Option<String> {
    number.strip_prefix("RFC ").map(|n| format!("https://www.rfc-editor.org/info/rfc{n}"))
}

fn xep_url(number: &str) -> String {
    format!("https://xmpp.org/extensions/{}.html", number.to_lowercase())
}

/// The project's DOAP description (RDF/XML) generated from the `xeps/` records: each RFC as
/// `doap:implements` of its RFC Editor page, each XEP as an `xmpp:SupportedXep` (version,
/// status, since, note) of the XMPP DOAP extension.
fn doap(records: &[toml::Table]) -> String {
    let mut out = String::new();
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>").unwrap();
    // No `--` in here: XML does not allow it inside a comment.
    writeln!(out, "<!-- Generated from xeps/*.toml by tests/layout.rs; do not edit by hand.").unwrap();
    writeln!(out, "     Run the layout test with STARLING_WRITE_DOAP=1 to regenerate it. -->").unwrap();
    writeln!(out, "<rdf:RDF xmlns=\"{DOAP_NS}\"").unwrap();
    writeln!(out, "         xmlns:rdf=\"{RDF_NS}\"").unwrap();
    writeln!(out, "         xmlns:xmpp=\"{XMPP_DOAP_NS}\">").unwrap();
    writeln!(out, "  <Project>").unwrap();
    writeln!(out, "    <name>Starling</name>").unwrap();
    writeln!(out, "    <shortdesc xml:lang=\"en\">An XMPP server</shortdesc>").unwrap();
    writeln!(out, "    <description xml:lang=\"en\">An XMPP server</description>").unwrap();
    writeln!(out, "    <programming-language>Rust</programming-language>").unwrap();
    let license = env!("CARGO_PKG_LICENSE");
    if !license.is_empty() && !license.contains(' ') {
        // A single SPDX identifier (not an expression) has a page of its own.
        writeln!(out, "    <license rdf:resource=\"https://spdx.org/licenses/{}.html\"/>", xml_escape(license))
            .unwrap();
    }
    writeln!(out, "    <category rdf:resource=\"{XMPP_DOAP_NS}category-server\"/>").unwrap();
    for record in records {
        let number = field(record, "number");
        if let Some(url) = rfc_url(number) {
            writeln!(out, "    <implements rdf:resource=\"{url}\"/>").unwrap();
            continue;
        }
        writeln!(out, "    <implements>").unwrap();
        writeln!(out, "      <xmpp:SupportedXep>").unwrap();
        writeln!(out, "        <xmpp:xep rdf:resource=\"{}\"/>", xep_url(number)).unwrap();
        for name in ["version", "status", "since"] {
            writeln!(out, "        <xmpp:{name}>{}</xmpp:{name}>", xml_escape(field(record, name))).unwrap();
        }
        let note = field(record, "notes");
        if !note.is_empty() {
            writeln!(out, "        <xmpp:note xml:lang=\"en\">{}</xmpp:note>", xml_escape(note)).unwrap();
        }
        writeln!(out, "      </xmpp:SupportedXep>").unwrap();
        writeln!(out, "    </implements>").unwrap();
    }
    writeln!(out, "  </Project>").unwrap();
    writeln!(out, "</rdf:RDF>").unwrap();
    out
}

/// Checks that `doap` is namespace-well-formed and says what the records say.
fn check_doap(doap: &str, records: &[toml::Table]) {
    let (prolog, body) = doap.split_at(doap.find("<rdf:RDF").unwrap());
    let comment = prolog.split_once("<!--").unwrap().1.split_once("-->").unwrap().0;
    assert!(!comment.contains("--") && !comment.ends_with('-'), "`--` in the comment: {comment}");
    let rdf = starling::xml::Element::parse(body.as_bytes()).unwrap();
    assert!(rdf.is("RDF", RDF_NS));
    let project = rdf.get_child("Project", DOAP_NS).unwrap();
    assert_eq!(project.get_child("name", DOAP_NS).unwrap().text(), "Starling");
    let implements: Vec<_> = project.child_elements().filter(|e| e.is("implements", DOAP_NS)).collect();
    assert_eq!(implements.len(), records.len());
    for (element, record) in implements.iter().zip(records) {
        let number = field(record, "number");
        match rfc_url(number) {
            Some(url) => assert_eq!(element.attr("rdf:resource"), Some(url.as_str())),
            None => {
                let xep = element.get_child("SupportedXep", XMPP_DOAP_NS).unwrap();
                let xep_ref = xep.get_child("xep", XMPP_DOAP_NS).unwrap();
                assert_eq!(xep_ref.attr("rdf:resource"), Some(xep_url(number).as_str()));
                for name in ["version", "status", "since"] {
                    assert_eq!(xep.get_child(name, XMPP_DOAP_NS).unwrap().text(), field(record, name), "{number}");
                }
                let note = xep.get_child("note", XMPP_DOAP_NS).map(starling::xml::Element::text);
                assert_eq!(note.unwrap_or_default(), field(record, "notes"), "{number}");
            }
        }
    }
}

#[test]
fn the_doap_file_is_generated_from_the_records() {
    let records = xep_records();
    let generated = doap(&records);
    check_doap(&generated, &records);
    let path = root().join(DOAP_PATH);
    if std::env::var("STARLING_WRITE_DOAP").is_ok_and(|v| v == "1") {
        fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let index = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let index = index.unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        let was = committed.lines().nth(index).unwrap_or("(end of file)");
        let now = generated.lines().nth(index).unwrap_or("(end of file)");
        let line = index + 1;
        panic!(
            "{DOAP_PATH} is out of date with xeps/*.toml (line {line} is {was:?}, the records give {now:?}); \
             regenerate it with `STARLING_WRITE_DOAP=1 cargo test --test layout` and commit it with the records"
        );
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
