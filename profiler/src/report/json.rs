//! The JSON document: `Report` serialized as is, pretty-printed.
use crate::model::Report;

pub fn to_json(r: &Report) -> String {
    serde_json::to_string_pretty(r).expect("a Report always serializes")
}
