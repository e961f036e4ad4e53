//! patronictl prints JSON with Python's `json.dumps` and YAML with PyYAML's `safe_dump`;
//! scripts parse that output, and some compare it as text. These writers produce the same
//! text for the values pgwardenctl prints (strings, integers, booleans, null, nested
//! objects and lists): Python's `", "`/`": "` separators and ASCII escapes, PyYAML's
//! sorted keys, block style and its rules for when a string needs quotes.

use serde_json::Value;

/// `json.dumps(value)` with Python's defaults.
pub fn json_dumps(v: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, v);
    out
}

fn write_json(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => json_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_string(out, k);
                out.push_str(": ");
                write_json(out, x);
            }
            out.push('}');
        }
    }
}

/// A JSON string with `ensure_ascii`: everything outside printable ASCII as `\uXXXX`.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// `yaml.safe_dump(value, default_flow_style=False)`: block style, keys sorted.
pub fn yaml_block(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Array(a) if !a.is_empty() => block_seq(&mut out, a, 0),
        Value::Object(m) if !m.is_empty() => block_map(&mut out, m, 0),
        other => {
            out.push_str(&yaml_flow(other));
            out.push('\n');
        }
    }
    out
}

fn block_seq(out: &mut String, a: &[Value], indent: usize) {
    for x in a {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match x {
            Value::Object(m) if !m.is_empty() => {
                // The first key shares the dash's line; the others align under it.
                let mut inner = String::new();
                block_map(&mut inner, m, indent + 2);
                out.push_str(inner.trim_start_matches(' '));
            }
            Value::Array(b) if !b.is_empty() => {
                let mut inner = String::new();
                block_seq(&mut inner, b, indent + 2);
                out.push_str(inner.trim_start_matches(' '));
            }
            scalar => {
                out.push_str(&scalar_text(scalar, indent + 2, false));
                out.push('\n');
            }
        }
    }
}

fn block_map(out: &mut String, m: &serde_json::Map<String, Value>, indent: usize) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for k in keys {
        let x = &m[k];
        out.push_str(&" ".repeat(indent));
        out.push_str(&string_text(k, indent + 2, false));
        out.push(':');
        match x {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                block_map(out, inner, indent + 2);
            }
            // PyYAML puts a sequence under a key at the key's own indentation.
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                block_seq(out, a, indent);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar, indent + 2, false));
                out.push('\n');
            }
        }
    }
}

/// `yaml.safe_dump(value, default_flow_style=True)` without the trailing newline.
pub fn yaml_flow(v: &Value) -> String {
    match v {
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(yaml_flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}: {}", string_text(k, 2, true), flow_scalar(&m[k])))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        scalar => scalar_text(scalar, 2, true),
    }
}

fn flow_scalar(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => yaml_flow(v),
        s => scalar_text(s, 2, true),
    }
}

fn scalar_text(v: &Value, indent: usize, flow: bool) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s, indent, flow),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string plain when PyYAML would write it plain, else single-quoted (quotes doubled,
/// each line break written as an empty line, continuation lines indented).
fn string_text(s: &str, indent: usize, flow: bool) -> String {
    if plain_ok(s, flow) {
        return s.to_string();
    }
    let mut out = String::from("'");
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\n\n");
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(&line.replace('\'', "''"));
    }
    out.push('\'');
    out
}

fn plain_ok(s: &str, flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(' ') || s.ends_with(' ') || s.contains('\n') || s.chars().any(char::is_control) {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    let second = s.chars().nth(1);
    if "-?:".contains(first) && second.is_none_or(|c| c == ' ') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if s.contains(": ") || s.ends_with(':') || s.contains(" #") {
        return false;
    }
    if flow && s.chars().any(|c| ",?[]{}".contains(c)) {
        return false;
    }
    !resolves_to_other_type(s)
}

/// Whether PyYAML's implicit resolvers would read the plain text as something other
/// than a string (bool, null, int, float, timestamp, merge or value keys).
fn resolves_to_other_type(s: &str) -> bool {
    const BOOLS: [&str; 18] = [
        "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On",
        "ON", "off", "Off", "OFF",
    ];
    BOOLS.contains(&s)
        || matches!(s, "~" | "null" | "Null" | "NULL" | "<<" | "=")
        || is_int(s)
        || is_float(s)
        || is_timestamp(s)
}

fn digits(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

fn unsigned(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn is_int(s: &str) -> bool {
    let u = unsigned(s);
    if let Some(b) = u.strip_prefix("0b") {
        return digits(b, |c| matches!(c, '0' | '1' | '_'));
    }
    if let Some(h) = u.strip_prefix("0x") {
        return digits(h, |c| c.is_ascii_hexdigit() || c == '_');
    }
    if u == "0" {
        return true;
    }
    if let Some(o) = u.strip_prefix('0') {
        return digits(o, |c| matches!(c, '0'..='7' | '_'));
    }
    let mut parts = u.split(':');
    let head = parts.next().unwrap_or("");
    let head_ok = head.starts_with(|c: char| matches!(c, '1'..='9'))
        && digits(head, |c| c.is_ascii_digit() || c == '_');
    // Sexagesimal: 1:30:00 is an integer to YAML 1.1.
    head_ok && parts.all(sexagesimal_part)
}

fn sexagesimal_part(p: &str) -> bool {
    (1..=2).contains(&p.len())
        && digits(p, |c| c.is_ascii_digit())
        && (p.len() == 1 || p.starts_with(|c: char| matches!(c, '0'..='5')))
}

fn is_float(s: &str) -> bool {
    let u = unsigned(s);
    if matches!(u, ".inf" | ".Inf" | ".INF") || matches!(s, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exp) = match u.find(['e', 'E']) {
        Some(i) => (&u[..i], Some(&u[i + 1..])),
        None => (u, None),
    };
    if let Some(e) = exp {
        // YAML 1.1 wants a sign in the exponent.
        let Some(d) = e.strip_prefix(['-', '+']) else {
            return false;
        };
        if !digits(d, |c| c.is_ascii_digit()) {
            return false;
        }
    }
    let Some((int, frac)) = mantissa.split_once('.') else {
        return false;
    };
    let frac_ok = frac.chars().all(|c| c.is_ascii_digit() || c == '_');
    if int.is_empty() {
        return !frac.is_empty() && frac_ok && s == u;
    }
    if int.contains(':') {
        let mut parts = int.split(':');
        let head = parts.next().unwrap_or("");
        return digits(head, |c| c.is_ascii_digit() || c == '_') && parts.all(sexagesimal_part) && frac_ok;
    }
    int.starts_with(|c: char| c.is_ascii_digit())
        && digits(int, |c| c.is_ascii_digit() || c == '_')
        && frac_ok
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    if !(d(0) && d(1) && d(2) && d(3) && b.get(4) == Some(&b'-')) {
        return false;
    }
    if s.len() == 10 {
        return d(5) && d(6) && b.get(7) == Some(&b'-') && d(8) && d(9);
    }
    // Date with time: month and day may have one digit, then T or blanks, then h?h:mm:ss.
    let mut i = 5;
    let num = |i: &mut usize, max: usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < max {
            *i += 1;
        }
        *i > start
    };
    if !num(&mut i, 2) || b.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    if !num(&mut i, 2) {
        return false;
    }
    match b.get(i) {
        Some(b'T' | b't') => i += 1,
        Some(b' ' | b'\t') => {
            while matches!(b.get(i), Some(b' ' | b'\t')) {
                i += 1
            }
        }
        _ => return false,
    }
    if !num(&mut i, 2) {
        return false;
    }
    for _ in 0..2 {
        if b.get(i) != Some(&b':') || !(d(i + 1) && d(i + 2)) {
            return false;
        }
        i += 3;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while d(i) {
            i += 1;
        }
    }
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match b.get(i) {
        None => true,
        Some(b'Z') => i + 1 == b.len(),
        Some(b'-' | b'+') => {
            i += 1;
            if !num(&mut i, 2) {
                return false;
            }
            if b.get(i) == Some(&b':') {
                i += 1;
                if !(d(i) && d(i + 1)) {
                    return false;
                }
                i += 2;
            }
            i == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Python's separators and ASCII escapes.
    #[test]
    fn json_like_python() {
        assert_eq!(
            json_dumps(&json!([{"a": 1, "b": "é\n", "c": [true, null]}])),
            r#"[{"a": 1, "b": "\u00e9\n", "c": [true, null]}]"#
        );
    }

    /// Quoting follows PyYAML's resolvers and indicators.
    #[test]
    fn yaml_quotes_like_pyyaml() {
        for (s, plain) in [
            ("running", true),
            ("0/3000060", true),
            ("10.0.0.1", true),
            ("127.0.0.1:5432", true),
            ("*", false),
            ("", false),
            ("16.4", false),
            ("100", false),
            ("on", false),
            ("null", false),
            ("a: b", false),
            ("2024-05-01T10:00:00.123456+00:00", false),
            ("2030-01-01T10:00:00+00:00 if version < 16.4", true),
            ("2024-05-01", false),
            ("1:30", false),
            ("1e5", true),
            ("1.0e+5", false),
            ("-", false),
            ("-x", true),
        ] {
            assert_eq!(plain_ok(s, false), plain, "{s:?}");
        }
        assert_eq!(yaml_flow(&json!({"b": "x,y", "a": true})), "{a: true, b: 'x,y'}");
        assert_eq!(yaml_block(&json!([])), "[]\n");
        assert_eq!(yaml_block(&json!({"k": "it's"})), "k: it's\n");
    }
}
