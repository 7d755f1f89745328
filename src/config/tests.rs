use super::*;

fn no_modules() -> Vec<(&'static str, ModuleSectionCheck)> {
    Vec::new()
}

#[test]
fn empty_file_gives_the_localhost_defaults() {
    let config = Config::parse("", &no_modules()).unwrap();
    assert_eq!(config.server.domains, vec!["localhost".to_string()]);
    assert_eq!(config.storage_url(), "sqlite://data/starling.db");
    assert_eq!(config.c2s.max_stanza_size.0, 262_144);
    assert!(config.c2s.require_encryption);
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    let text = "[server]\ndomain = 'x'\n[c2s]\nlisten_port = 1\n[bogus]\na = 1\n";
    let errors = Config::parse(text, &no_modules()).unwrap_err().0;
    assert!(errors.contains(&"server.domain: unknown key".to_string()), "{errors:?}");
    assert!(errors.contains(&"c2s.listen_port: unknown key".to_string()), "{errors:?}");
    assert!(errors.contains(&"bogus: unknown key".to_string()), "{errors:?}");
}

#[test]
fn validation_errors_are_reported_together() {
    let text = "[server]\ndomains = []\n[storage]\nurl = 'mysql://x'\n[c2s]\nmax_stanza_size = 100\n\
                [tls.certs.'other.example']\ncert = '/nonexistent/c.pem'\nkey = '/nonexistent/k.pem'\n";
    let errors = Config::parse(text, &no_modules()).unwrap_err().0;
    let joined = errors.join("\n");
    for expected in ["server.domains", "storage.url", "c2s.max_stanza_size", "tls.certs.\"other.example\".cert"] {
        assert!(joined.contains(expected), "missing {expected} in {joined}");
    }
}

#[test]
fn type_errors_name_the_key() {
    let errors = Config::parse("[c2s]\nrequire_encryption = 'yes'\n", &no_modules()).unwrap_err().0;
    assert!(errors[0].contains("require_encryption"), "{errors:?}");
}

#[test]
fn unknown_module_sections_are_errors() {
    let errors = Config::parse("[modules.nonexistent]\n", &no_modules()).unwrap_err().0;
    assert_eq!(errors, vec!["modules.nonexistent: no such module".to_string()]);
}
