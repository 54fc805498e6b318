//! Random instances of the type model, mostly valid and sometimes wrong in one or more
//! places, for property tests that compare validators (the JSON Schema decides what is valid).

use serde_json::{json, Map, Value};

use crate::model::{Def, Format, Module, Num, Ty};

/// A small seeded generator (xorshift64*), so a failing case is reproduced from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

pub struct Sampler<'a> {
    pub module: &'a Module,
    pub rng: Rng,
    /// Chance in percent that a value is replaced by a likely wrong one.
    pub wrong: u64,
}

const DATE_TIMES: &[&str] = &[
    "2024-01-15T10:30:00Z",
    "2024-01-15T10:30:00.123456Z",
    "2024-01-15T10:30:00+05:30",
    "2024-02-29T23:59:59-08:00",
];
const WRONG_STRINGS: &[&str] = &[
    "",
    "not-a-uuid",
    "2024-01-15T10:30:00",
    "2024-13-01T00:00:00Z",
    "2024-01-15",
    "550e8400-e29b-41d4-a716-44665544000",
    "EN",
    "x y",
    "1",
    "1700000000",
    "550e8400e29b41d4a716446655440000",
    "{550e8400-e29b-41d4-a716-446655440000}",
    "2024-01-15T10:30Z",
    "2024-01-15 10:30:00Z",
    "2024-01-15t10:30:00z",
    "2024-01-15T10:30:00+0100",
    "2024-01-15T25:30:00Z",
];
const WORDS: &[&str] = &[
    "alpha",
    "Bob",
    "tonny",
    "en",
    "all",
    "talkytonny",
    "idea",
    "a_b-c",
    "héllo wörld",
    "ß",
];

impl Sampler<'_> {
    pub fn object(&mut self, name: &str) -> Value {
        self.ty(&Ty::Named(name.to_string()), 0)
    }

    fn ty(&mut self, ty: &Ty, depth: u32) -> Value {
        if self.rng.chance(self.wrong) {
            return self.wrong_value();
        }
        match ty {
            Ty::String(s) => match s.format {
                Some(Format::Uuid) => self.uuid(),
                Some(Format::DateTime) => json!(self.rng.pick(DATE_TIMES)),
                Some(Format::Date) => json!("2024-02-29"),
                None => {
                    let min = s.min_length.unwrap_or(0);
                    let max = s.max_length.unwrap_or(min + 12).min(min + 12);
                    let text = match s.pattern.is_some() && self.rng.chance(70) {
                        true => self.rng.pick(WORDS).to_string(),
                        false => {
                            let len = min + self.rng.below(max - min + 1);
                            self.text(len)
                        }
                    };
                    json!(text)
                }
            },
            Ty::Integer(n) => json!(self.number(n)),
            Ty::Number(n) => {
                let whole = self.number(n);
                let fraction = self.rng.below(1000) as f64 / 1000.0;
                let upper = n
                    .maximum
                    .as_ref()
                    .and_then(|m| m.as_f64())
                    .unwrap_or(f64::MAX);
                json!(if whole as f64 + fraction <= upper {
                    whole as f64 + fraction
                } else {
                    whole as f64
                })
            }
            Ty::Boolean => json!(self.rng.chance(50)),
            Ty::Null => Value::Null,
            Ty::Literal(v) => v.clone(),
            Ty::Enum(values) => self.rng.pick(values).clone(),
            Ty::Array(items, limits) => {
                let min = limits.min_items.unwrap_or(0);
                let max = limits.max_items.unwrap_or(min + 3).min(min + 3);
                let len = min + self.rng.below(max - min + 1);
                Value::Array((0..len).map(|_| self.ty(items, depth + 1)).collect())
            }
            Ty::Map(values) => {
                let len = self.rng.below(3);
                Value::Object(
                    (0..len)
                        .map(|i| (format!("key{i}"), self.ty(values, depth + 1)))
                        .collect(),
                )
            }
            Ty::Nullable(inner) => match self.rng.chance(25) {
                true => Value::Null,
                false => self.ty(inner, depth),
            },
            Ty::Any => json!({"any": [1, "two", null]}),
            Ty::Named(name) => self.named(name, depth),
        }
    }

    fn named(&mut self, name: &str, depth: u32) -> Value {
        match self.module.def(name) {
            Some(Def::Object(o)) => {
                let mut map = Map::new();
                for field in &o.fields {
                    let include = match field.required {
                        true => !self.rng.chance(self.wrong / 2),
                        false => self.rng.chance(60),
                    };
                    if include {
                        map.insert(field.name.clone(), self.ty(&field.ty, depth + 1));
                    }
                }
                if self.rng.chance(self.wrong / 2) {
                    map.insert("zz_extra".into(), json!(1));
                }
                Value::Object(map)
            }
            Some(Def::Union(u)) => {
                let (_, variant) = self.rng.pick(&u.variants).clone();
                self.named(&variant, depth)
            }
            None => Value::Null,
        }
    }

    fn number(&mut self, n: &Num) -> i64 {
        let get = |v: &Option<serde_json::Number>| v.as_ref().and_then(|x| x.as_f64());
        let low = get(&n.minimum)
            .or(get(&n.exclusive_minimum).map(|x| x.floor() + 1.0))
            .unwrap_or(-50.0) as i64;
        let high = get(&n.maximum)
            .or(get(&n.exclusive_maximum).map(|x| x.ceil() - 1.0))
            .unwrap_or(low as f64 + 1000.0) as i64;
        match self.rng.below(4) {
            0 => low,
            1 => high,
            _ => low + self.rng.below((high - low).max(0) as u64 + 1) as i64,
        }
    }

    fn uuid(&mut self) -> Value {
        let hex = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let uuid = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        json!(if self.rng.chance(20) {
            uuid.to_uppercase()
        } else {
            uuid
        })
    }

    fn text(&mut self, len: u64) -> String {
        (0..len)
            .map(|_| *self.rng.pick(&['a', 'b', 'Z', ' ', '7', 'é', '-', '_']))
            .collect()
    }

    fn wrong_value(&mut self) -> Value {
        match self.rng.below(8) {
            0 => Value::Null,
            1 => json!(true),
            2 => json!(-1),
            3 => json!(1.5),
            4 => json!(3.0),
            5 => json!("1"),
            6 => json!([]),
            _ => json!(self.rng.pick(WRONG_STRINGS)),
        }
    }
}
