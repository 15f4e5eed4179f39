//! What a PromQL function is given: its arguments already evaluated by the evaluator
//! (numbers, strings, instant vectors, range-vector windows), the evaluation time, and
//! the query's label interner.
//!
//! Promise: a function reads its arguments here and nowhere else; it never evaluates an
//! expression itself.

use super::super::error::{Error, Result};
use super::super::intern::Interner;
use super::super::value::{Labels, RangeArg, Sample};

/// One evaluated argument.
pub enum Arg {
    /// A number.
    Scalar(f64),
    /// A string.
    Str(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// `timestamp()`'s argument: each sample with the time it was sampled at (the
    /// evaluation time for samples that were computed rather than selected).
    Timed(Vec<(Sample, i64)>),
    /// A range vector: each series' points in a window.
    Range(RangeArg),
}

/// A call's evaluated arguments, taken one by one.
pub struct Args {
    name: &'static str,
    values: Vec<Option<Arg>>,
    /// For `absent` and `absent_over_time`: the labels the argument's selector fixes
    /// (its equality matchers, `__name__` left out); empty otherwise.
    pub absent_labels: Labels,
}

impl Args {
    /// The arguments of function `name`, in order.
    pub fn new(name: &'static str, values: Vec<Arg>, absent_labels: Labels) -> Args {
        Args {
            name,
            values: values.into_iter().map(Some).collect(),
            absent_labels,
        }
    }

    /// Whether the call has an `i`th argument (counting from 0).
    pub fn has(&self, i: usize) -> bool {
        i < self.values.len()
    }

    fn take(&mut self, i: usize) -> Result<Arg> {
        self.values
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| {
                Error::BadData(format!(
                    "parse error: expected more arguments for {}",
                    self.name
                ))
            })
    }

    fn mismatch(&self, i: usize, want: &str) -> Error {
        Error::Execution(format!("argument {} of {} is not {want}", i + 1, self.name))
    }

    /// Argument `i`, a number.
    pub fn scalar(&mut self, i: usize) -> Result<f64> {
        match self.take(i)? {
            Arg::Scalar(v) => Ok(v),
            _ => Err(self.mismatch(i, "a scalar")),
        }
    }

    /// Argument `i`, a string.
    pub fn string(&mut self, i: usize) -> Result<String> {
        match self.take(i)? {
            Arg::Str(s) => Ok(s),
            _ => Err(Error::BadData("parse error: expected a string".into())),
        }
    }

    /// Argument `i`, an instant vector.
    pub fn vector(&mut self, i: usize) -> Result<Vec<Sample>> {
        match self.take(i)? {
            Arg::Vector(v) => Ok(v),
            _ => Err(self.mismatch(i, "an instant vector")),
        }
    }

    /// Argument `i`, an instant vector with its samples' times.
    pub fn timed(&mut self, i: usize) -> Result<Vec<(Sample, i64)>> {
        match self.take(i)? {
            Arg::Timed(v) => Ok(v),
            _ => Err(self.mismatch(i, "an instant vector with times")),
        }
    }

    /// Argument `i`, a range vector.
    pub fn range(&mut self, i: usize) -> Result<RangeArg> {
        match self.take(i)? {
            Arg::Range(r) => Ok(r),
            _ => Err(self.mismatch(i, "a range vector")),
        }
    }
}

/// Where a call is evaluated.
pub struct Ctx<'a> {
    /// The evaluation time (ms).
    pub t: i64,
    /// The query's derived label sets (labels without `__name__`).
    pub names: &'a Interner,
}
