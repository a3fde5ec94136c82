//! Builds a profile.proto: string table, deduplicated functions and locations, samples.
use std::{collections::HashMap, io::Write as _};

use prost::Message as _;

use super::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// One frame of a stack, leaf first in `add_sample`.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub function: &'a str,
    pub file: Option<&'a str>,
    pub line: Option<u32>,
}

pub struct ProfileBuilder {
    p: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64), u64>,
    locations: HashMap<(u64, i64), u64>,
}

impl ProfileBuilder {
    pub fn new(sample_types: &[(&str, &str)], exe: &str) -> Self {
        let mut b = ProfileBuilder {
            p: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
        };
        b.str(""); // index 0 is the empty string
        b.p.sample_type = sample_types
            .iter()
            .map(|(t, u)| ValueType { r#type: b.str(t), unit: b.str(u) })
            .collect();
        b.p.default_sample_type = b.p.sample_type.first().map_or(0, |v| v.r#type);
        b.p.period_type = b.p.sample_type.first().cloned();
        b.p.period = 1;
        let filename = b.str(exe);
        b.p.mapping.push(Mapping {
            id: 1,
            filename,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            ..Default::default()
        });
        b.p.time_nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        b
    }

    fn str(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn location(&mut self, f: &Frame) -> u64 {
        let name = self.str(f.function);
        let file = self.str(f.file.unwrap_or(""));
        let fid = match self.functions.get(&(name, file)) {
            Some(&id) => id,
            None => {
                let id = self.p.function.len() as u64 + 1;
                self.p.function.push(Function { id, name, system_name: name, filename: file, start_line: 0 });
                self.functions.insert((name, file), id);
                id
            }
        };
        let line = i64::from(f.line.unwrap_or(0));
        if let Some(&id) = self.locations.get(&(fid, line)) {
            return id;
        }
        let id = self.p.location.len() as u64 + 1;
        self.p.location.push(Location {
            id,
            mapping_id: 1,
            line: vec![Line { function_id: fid, line, column: 0 }],
            ..Default::default()
        });
        self.locations.insert((fid, line), id);
        id
    }

    /// Adds a sample: one value per sample type, the stack leaf first, string labels.
    pub fn add_sample(&mut self, values: &[i64], stack: &[Frame], labels: &[(&str, &str)]) {
        let location_id = stack.iter().map(|f| self.location(f)).collect();
        let label = labels
            .iter()
            .map(|(k, v)| Label { key: self.str(k), str: self.str(v), ..Default::default() })
            .collect();
        self.p.sample.push(Sample { location_id, value: values.to_vec(), label });
    }

    pub fn add_comment(&mut self, c: &str) {
        let i = self.str(c);
        self.p.comment.push(i);
    }

    /// Serializes and gzips the profile.
    pub fn finish(mut self, duration_nanos: i64) -> Vec<u8> {
        self.p.duration_nanos = duration_nanos;
        let raw = self.p.encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&raw).expect("writing to a Vec");
        gz.finish().expect("writing to a Vec")
    }
}
