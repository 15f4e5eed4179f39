//! What a read of planned rows is about to fetch: the byte ranges of the pages holding
//! them, so a file read in place from the object store (`bucket::remote`) fetches them in
//! one round of concurrent requests instead of page by page as the reader asks.

use std::ops::Range;

use parquet::arrow::arrow_reader::RowSelector;
use parquet::file::metadata::ParquetMetaData;

/// The byte ranges of the pages of the leaf columns `columns` of row group `group` that
/// rows selected by `selectors` (over that group's rows) fall in, each column's dictionary
/// page included; the whole column chunk when the file has no offset index.
pub fn page_ranges(
    meta: &ParquetMetaData,
    group: usize,
    selectors: &[RowSelector],
    columns: &[usize],
) -> Vec<Range<u64>> {
    let rg = meta.row_group(group);
    let rows = rg.num_rows().max(0) as u64;
    let mut wanted: Vec<Range<u64>> = Vec::new();
    let mut at = 0u64;
    for s in selectors {
        let n = s.row_count as u64;
        if !s.skip && n > 0 {
            wanted.push(at..at + n);
        }
        at += n;
    }
    let mut out = Vec::new();
    for &c in columns {
        let chunk = rg.column(c);
        let pages = meta
            .offset_index()
            .and_then(|index| index.get(group)?.get(c))
            .map(|o| o.page_locations());
        match pages {
            Some(pages) if !pages.is_empty() => {
                if let Some(dict) = chunk.dictionary_page_offset() {
                    out.push(dict.max(0) as u64..pages[0].offset.max(0) as u64);
                }
                for (k, p) in pages.iter().enumerate() {
                    let lo = p.first_row_index.max(0) as u64;
                    let hi = pages
                        .get(k + 1)
                        .map_or(rows, |n| n.first_row_index.max(0) as u64);
                    if wanted.iter().any(|w| w.start < hi && lo < w.end) {
                        let start = p.offset.max(0) as u64;
                        out.push(start..start + p.compressed_page_size.max(0) as u64);
                    }
                }
            }
            _ => {
                let (start, len) = chunk.byte_range();
                out.push(start..start + len);
            }
        }
    }
    out
}

/// The leaf column indices of the columns named `names`.
pub fn leaves(meta: &ParquetMetaData, names: &[&str]) -> Vec<usize> {
    let schema = meta.file_metadata().schema_descr();
    (0..schema.num_columns())
        .filter(|&i| names.contains(&schema.column(i).name()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::head::SeriesKey;
    use crate::store::partition;

    #[test]
    fn only_the_pages_of_selected_rows_are_named() {
        // 200 series of 2,000 uneven samples: many pages per column.
        let dir = tempfile::tempdir().unwrap();
        let series: Vec<(SeriesKey, Vec<(i64, u64)>)> = (0..200u64)
            .map(|i| {
                let key = SeriesKey {
                    metric: "m".into(),
                    labels: format!("{{\"pod\":\"p{i:03}\"}}").into(),
                };
                let points = (0..2000u64)
                    .map(|k| {
                        let v = ((i * 7919 + k * 104_729) % 1_000_003) as f64 / 7.0;
                        (k as i64 * 1000, v.to_bits())
                    })
                    .collect();
                (key, points)
            })
            .collect();
        let (path, _) = partition::write_day(dir.path(), 0, series, "part-1.parquet").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new().with_page_index(true);
        let meta = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(&file, options).unwrap();
        let meta = meta.metadata();
        let cols = leaves(meta, &["timestamp", "value"]);
        assert_eq!(cols.len(), 2);
        let rows = meta.row_group(0).num_rows() as usize;
        let all = page_ranges(meta, 0, &[RowSelector::select(rows)], &cols);
        let one = page_ranges(
            meta,
            0,
            &[
                RowSelector::skip(2000 * 100),
                RowSelector::select(2000),
                RowSelector::skip(rows - 2000 * 101),
            ],
            &cols,
        );
        let bytes = |r: &[Range<u64>]| r.iter().map(|r| r.end - r.start).sum::<u64>();
        assert!(all.len() > 4, "{} pages", all.len());
        assert!(!one.is_empty());
        assert!(
            bytes(&one) * 10 < bytes(&all),
            "{} of {}",
            bytes(&one),
            bytes(&all)
        );
        assert!(one.iter().all(|r| all.contains(r)));
        assert!(page_ranges(meta, 0, &[RowSelector::skip(rows)], &cols).is_empty());
    }
}
