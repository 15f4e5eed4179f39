//! `sort` and `sort_desc`: an instant vector ordered by value, NaN where Go's sort puts
//! it (first ascending, last descending).
//!
//! Promise: samples are kept whole (labels, metric name and all); equal values keep
//! their order.

use super::super::error::Result;
use super::super::value::Value;
use super::args::Args;

/// `sort(v)`, or `sort_desc(v)` when `desc`.
pub fn sort(desc: bool, mut args: Args) -> Result<Value> {
    let mut v = args.vector(0)?;
    // Go's sort puts NaN first in ascending order and last in descending.
    v.sort_by(|a, b| {
        let (x, y) = if desc { (b.v, a.v) } else { (a.v, b.v) };
        match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) if desc => std::cmp::Ordering::Greater,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) if desc => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => x.total_cmp(&y),
        }
    });
    Ok(Value::Vector(v))
}
