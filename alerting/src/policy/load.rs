//! Loading `--policies` ([`Rules::load`]): a file, or every `*.yml`/`*.yaml` in a
//! directory, each sorted into a Prometheus rule file (a top-level `groups:` key) or a
//! Telltale policy file, and compiled in an order that lets a policy name a receiver
//! defined in another file.
//!
//! It promises all or nothing: any bad file refuses the whole set, so the caller keeps
//! running what it loaded before; group ids are unique across the set.

use std::path::{Path, PathBuf};

use crate::policy::error::{parse_err, Error, Result};
use crate::policy::policy_file::PolicyFile;
use crate::policy::rule_file::RuleFile;
use crate::policy::rules::Rules;

impl Rules {
    /// Loads `path`: a file, or every `*.yml`/`*.yaml` file in a directory (sorted).
    pub fn load(path: &Path) -> Result<Rules> {
        let read_err = |source| Error::Read {
            path: path.to_owned(),
            source,
        };
        let files = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension().is_some_and(|e| e == "yml" || e == "yaml")
                        && !p.to_string_lossy().ends_with(".test.yml")
                })
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut rules = Rules::default();
        let mut policy_files = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            let value: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
            if value.get("groups").is_some() {
                let f: RuleFile = serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
                rules.add_rule_file(file, f)?;
            } else {
                let f: PolicyFile = serde_yaml::from_str(&text).map_err(|e| parse_err(file, e))?;
                policy_files.push((file.clone(), f));
            }
        }
        // Receivers first, so a policy may name one from another file.
        for (file, f) in &policy_files {
            for r in &f.receivers {
                rules.add_receiver(file, r)?;
            }
        }
        for (file, f) in policy_files {
            rules.add_routes(&file, f.routes)?;
            for p in f.policies {
                rules.add_policy(&file, p)?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for g in &rules.groups {
            if !seen.insert(&g.id) {
                return Err(Error::Invalid {
                    path: path.to_owned(),
                    what: g.id.clone(),
                    key: "name",
                    message: "defined twice".into(),
                });
            }
        }
        Ok(rules)
    }
}
