//! The price table (`--prices`, YAML; docs/billing.md): unit prices as decimals, the default
//! pod size, the spot discount and an optional size ladder.
//!
//! Prices are read exactly as written (`0.000004976` is that decimal, not the nearest
//! binary float), so the worked check in docs/billing.md comes out to the last digit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use telltale_model::quantity;

/// Errors loading a price table.
#[derive(Debug, thiserror::Error)]
#[error("--prices {path}: {message}")]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, naming the key.
    pub message: String,
}

/// A pod's billable size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Size {
    /// CPU cores.
    pub cpu: Decimal,
    /// Memory in GiB (2^30 bytes).
    pub memory_gib: Decimal,
    /// Extended resources by name as Kubernetes writes it (`nvidia.com/gpu`): count.
    pub gpu: BTreeMap<String, Decimal>,
}

/// Spot pods: those with `annotation` = `"true"` pay `multiplier` times the price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spot {
    /// The pod annotation that marks a spot pod.
    pub annotation: String,
    /// The factor applied to a spot pod's cost.
    pub multiplier: Decimal,
}

/// A price table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    /// Currency of every price (`USD`).
    pub currency: String,
    /// Price of one core for one second.
    pub cpu_core_second: Decimal,
    /// Price of one GiB for one second.
    pub memory_gib_second: Decimal,
    /// Price of one unit of an extended resource for one second, by resource name.
    pub gpu_second: BTreeMap<String, Decimal>,
    /// The size billed for a pod that sets no requests, limits or size annotations.
    pub default_pod: Size,
    /// Spot pricing, if any.
    pub spot: Option<Spot>,
    /// Offered (cpu, memory) sizes, smallest first: a pod's size is rounded up to the
    /// first that holds it. Empty: sizes are billed as computed.
    pub size_ladder: Vec<Size>,
    /// Decimal places of money in reports (records are never rounded).
    pub report_decimals: u32,
}

impl Default for Prices {
    /// docs/billing.md's example table.
    fn default() -> Self {
        Prices {
            currency: "USD".into(),
            cpu_core_second: Decimal::new(4_976, 9),
            memory_gib_second: Decimal::new(2_073, 9),
            gpu_second: [("nvidia.com/gpu".to_string(), Decimal::new(416, 6))].into(),
            default_pod: Size {
                cpu: Decimal::ONE,
                memory_gib: Decimal::TWO,
                gpu: BTreeMap::new(),
            },
            spot: Some(Spot {
                annotation: "eks.tke.cloud.tencent.com/spot-pod".into(),
                multiplier: Decimal::new(2, 1),
            }),
            size_ladder: Vec::new(),
            report_decimals: 2,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    currency: Option<String>,
    cpu_core_second: serde_yaml::Value,
    memory_gib_second: serde_yaml::Value,
    #[serde(default)]
    gpu_second: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    default_pod: Option<RawSize>,
    #[serde(default)]
    spot: Option<RawSpot>,
    #[serde(default)]
    size_ladder: Vec<RawSize>,
    #[serde(default)]
    report_decimals: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSize {
    cpu: serde_yaml::Value,
    memory: serde_yaml::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpot {
    annotation: String,
    multiplier: serde_yaml::Value,
}

/// A YAML number or string as the decimal it spells.
fn decimal(v: &serde_yaml::Value) -> Option<Decimal> {
    let text = match v {
        // A YAML float prints as the shortest text that reads back to it: the digits the
        // table's author wrote.
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .ok()
}

/// A Kubernetes quantity (`2Gi`, `500m`, `1`) as a decimal of base units.
pub fn quantity_decimal(v: &str) -> Option<Decimal> {
    if let Ok(d) = Decimal::from_str(v.trim()) {
        return Some(d);
    }
    from_f64(quantity::parse(v)?)
}

/// An `f64` as the shortest decimal that reads back to it (`0.1`, not
/// `0.1000000000000000055511151231`): series values carry what the collector read.
pub fn from_f64(v: f64) -> Option<Decimal> {
    if !v.is_finite() {
        return None;
    }
    Decimal::from_str(&v.to_string())
        .or_else(|_| Decimal::from_scientific(&format!("{v:e}")))
        .ok()
}

/// Bytes per GiB.
pub fn gib() -> Decimal {
    Decimal::from(1u64 << 30)
}

impl Prices {
    /// Reads a price table.
    pub fn load(path: &Path) -> Result<Prices, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Prices::parse(&text).map_err(|message| Error {
            path: path.to_owned(),
            message,
        })
    }

    /// Reads a price table from YAML text; the error names the key.
    pub fn parse(text: &str) -> Result<Prices, String> {
        let raw: RawTable = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let price = |key: &str, v: &serde_yaml::Value| -> Result<Decimal, String> {
            match decimal(v) {
                Some(d) if d >= Decimal::ZERO => Ok(d),
                _ => Err(format!("{key}: expected a price (a number ≥ 0), got {v:?}")),
            }
        };
        let size = |key: &str, s: &RawSize| -> Result<Size, String> {
            let q = |v: &serde_yaml::Value| match v {
                serde_yaml::Value::String(s) => quantity_decimal(s),
                other => decimal(other),
            };
            let cpu = q(&s.cpu)
                .filter(|d| *d >= Decimal::ZERO)
                .ok_or_else(|| format!("{key}.cpu: expected cores (1, 500m), got {:?}", s.cpu))?;
            let bytes = q(&s.memory)
                .filter(|d| *d >= Decimal::ZERO)
                .ok_or_else(|| {
                    format!(
                        "{key}.memory: expected a quantity (2Gi, 512Mi), got {:?}",
                        s.memory
                    )
                })?;
            Ok(Size {
                cpu,
                memory_gib: bytes / gib(),
                gpu: BTreeMap::new(),
            })
        };
        let defaults = Prices::default();
        let mut gpu_second = BTreeMap::new();
        for (name, v) in &raw.gpu_second {
            gpu_second.insert(name.clone(), price(&format!("gpu_second.{name}"), v)?);
        }
        let mut size_ladder = Vec::new();
        for (i, s) in raw.size_ladder.iter().enumerate() {
            size_ladder.push(size(&format!("size_ladder[{i}]"), s)?);
        }
        size_ladder.sort_by_key(|s| (s.cpu, s.memory_gib));
        Ok(Prices {
            currency: raw.currency.unwrap_or(defaults.currency),
            cpu_core_second: price("cpu_core_second", &raw.cpu_core_second)?,
            memory_gib_second: price("memory_gib_second", &raw.memory_gib_second)?,
            gpu_second,
            default_pod: match &raw.default_pod {
                Some(s) => size("default_pod", s)?,
                None => defaults.default_pod,
            },
            spot: match raw.spot {
                Some(s) => Some(Spot {
                    multiplier: price("spot.multiplier", &s.multiplier)?,
                    annotation: s.annotation,
                }),
                None => None,
            },
            size_ladder,
            report_decimals: raw.report_decimals.unwrap_or(2),
        })
    }

    /// The price of a pod of `size` for one second (before any spot multiplier).
    /// Extended resources without a price cost nothing.
    pub fn per_second(&self, size: &Size) -> Decimal {
        let gpu: Decimal = size
            .gpu
            .iter()
            .map(|(name, n)| *n * self.gpu_second.get(name).copied().unwrap_or_default())
            .sum();
        size.cpu * self.cpu_core_second + size.memory_gib * self.memory_gib_second + gpu
    }

    /// `size` rounded up to the first ladder step that holds it (unchanged with no
    /// ladder, or when no step is large enough).
    pub fn on_ladder(&self, size: Size) -> Size {
        match self
            .size_ladder
            .iter()
            .find(|s| s.cpu >= size.cpu && s.memory_gib >= size.memory_gib)
        {
            Some(step) => Size {
                cpu: step.cpu,
                memory_gib: step.memory_gib,
                gpu: size.gpu,
            },
            None => size,
        }
    }
}
