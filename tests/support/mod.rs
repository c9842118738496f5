//! Shared helpers for the integration tests: loading `pdu-fixtures/`.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

/// One fixture file.
pub struct Fixture {
    pub path: PathBuf,
    pub json: Value,
}

impl Fixture {
    pub fn name(&self) -> &str {
        self.json["name"].as_str().unwrap()
    }
    pub fn bytes(&self) -> Vec<u8> {
        smpp_proxy::hex::decode(self.json["hex"].as_str().unwrap()).unwrap()
    }
    pub fn valid(&self) -> bool {
        self.json["valid"].as_bool().unwrap()
    }
}

/// Every fixture under `pdu-fixtures/<dir>/`, sorted by name.
pub fn fixtures(dir: &str) -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pdu-fixtures")
        .join(dir);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            Fixture { path, json }
        })
        .collect()
}

/// All fixtures: the public vectors and the project's own.
pub fn all_fixtures() -> Vec<Fixture> {
    let mut all = fixtures("public");
    all.extend(fixtures("own"));
    all
}
