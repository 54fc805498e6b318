//! Zod 3 schemas with inferred TypeScript types: `<Name>Schema` and `type <Name>`.

use std::fmt::Write;

use crate::gen::{literal, Layout, HEADER};
use crate::model::{Def, Format, Module, Num, Object, Ty, Union};

pub(crate) const LAYOUT: Layout = Layout {
    extension: "ts",
    index_file: "index.ts",
    index_head: || format!("// {HEADER}\n"),
    index_line: |component| format!("export * as {component} from \"./{component}.js\";\n"),
    render,
};

fn render(module: &Module) -> String {
    let mut out = format!(
        "// {HEADER}\n// Event contracts of component `{}`.\n\nimport {{ z }} from \"zod\";\n\n",
        module.component
    );
    out.push_str("const unique = (items: unknown[]) => new Set(items.map((i) => JSON.stringify(i))).size === items.length;\n");
    for def in &module.defs {
        out.push('\n');
        match def {
            Def::Object(o) => object(&mut out, o),
            Def::Union(u) => union(&mut out, u),
        }
        let _ = writeln!(
            out,
            "export type {0} = z.infer<typeof {0}Schema>;",
            def.name()
        );
    }
    out.push_str("\n/** \"event.type@version\" -> schema */\nexport const EVENTS: Record<string, z.ZodTypeAny> = {\n");
    for event in &module.events {
        let key = format!("{}@{}", event.name.event_type(), event.name.version);
        let _ = writeln!(
            out,
            "  {}: {}Schema,",
            literal(&key.into()),
            event.type_name
        );
    }
    out.push_str("};\n");
    out
}

fn object(out: &mut String, o: &Object) {
    if let Some(doc) = &o.doc {
        let _ = writeln!(out, "/** {} */", doc.replace("*/", "* /"));
    }
    let _ = writeln!(out, "export const {}Schema = z", o.name);
    out.push_str("  .object({\n");
    for field in &o.fields {
        let ty = zod(&field.ty);
        let ty = if field.required {
            ty
        } else {
            format!("{ty}.optional()")
        };
        let _ = writeln!(out, "    {}: {ty},", literal(&field.name.clone().into()));
    }
    let content = if o.closed { "strict" } else { "passthrough" };
    let _ = writeln!(out, "  }})\n  .{content}();");
}

fn union(out: &mut String, u: &Union) {
    let variants: Vec<String> = u
        .variants
        .iter()
        .map(|(_, name)| format!("{name}Schema"))
        .collect();
    let _ = writeln!(
        out,
        "export const {}Schema = z.discriminatedUnion({}, [{}]);",
        u.name,
        literal(&u.discriminator.clone().into()),
        variants.join(", ")
    );
}

fn zod(ty: &Ty) -> String {
    match ty {
        Ty::String(s) => {
            let mut out = "z.string()".to_string();
            match s.format {
                Some(Format::Uuid) => out.push_str(".uuid()"),
                Some(Format::DateTime) => out.push_str(".datetime({ offset: true })"),
                Some(Format::Date) => out.push_str(".date()"),
                None => {}
            }
            if let Some(n) = s.min_length {
                let _ = write!(out, ".min({n})");
            }
            if let Some(n) = s.max_length {
                let _ = write!(out, ".max({n})");
            }
            if let Some(p) = &s.pattern {
                let _ = write!(
                    out,
                    ".regex(new RegExp({}, \"u\"))",
                    literal(&p.clone().into())
                );
            }
            out
        }
        Ty::Integer(n) => format!("z.number().int(){}", numeric(n)),
        Ty::Number(n) => format!("z.number(){}", numeric(n)),
        Ty::Boolean => "z.boolean()".into(),
        Ty::Null => "z.null()".into(),
        Ty::Literal(v) => format!("z.literal({})", literal(v)),
        Ty::Enum(values) if values.iter().all(|v| v.is_string()) => {
            format!(
                "z.enum([{}])",
                values.iter().map(literal).collect::<Vec<_>>().join(", ")
            )
        }
        Ty::Enum(values) => {
            let literals: Vec<String> = values
                .iter()
                .map(|v| format!("z.literal({})", literal(v)))
                .collect();
            format!("z.union([{}])", literals.join(", "))
        }
        Ty::Array(items, limits) => {
            let mut out = format!("z.array({})", zod(items));
            if let Some(n) = limits.min_items {
                let _ = write!(out, ".min({n})");
            }
            if let Some(n) = limits.max_items {
                let _ = write!(out, ".max({n})");
            }
            if limits.unique {
                out.push_str(".refine(unique, { message: \"items must be unique\" })");
            }
            out
        }
        Ty::Map(values) => format!("z.record(z.string(), {})", zod(values)),
        Ty::Named(name) => format!("{name}Schema"),
        Ty::Nullable(inner) => format!("{}.nullable()", zod(inner)),
        Ty::Any => "z.unknown()".into(),
    }
}

fn numeric(n: &Num) -> String {
    let mut out = String::new();
    for (method, value) in [
        ("gte", &n.minimum),
        ("lte", &n.maximum),
        ("gt", &n.exclusive_minimum),
        ("lt", &n.exclusive_maximum),
        ("multipleOf", &n.multiple_of),
    ] {
        if let Some(v) = value {
            let _ = write!(out, ".{method}({v})");
        }
    }
    out
}
