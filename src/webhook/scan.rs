//! An AdmissionReview read as a walk over its text: the caller enters the objects it reads, member by
//! member, decodes the values a rule reads with serde_json, and every other value is stepped over by its
//! structure alone.
//!
//! Why not serde all the way: most of a review is what no rule reads (a Deployment's pod template and
//! managedFields, the request's userInfo), and serde_json's `IgnoredAny` still tokenizes all of it, about
//! 15 instructions a byte; stepping over a value by its brackets and string ends costs about 7
//! (`bash scripts/admission-instructions.sh` measures the whole request). A stepped-over value is checked
//! for balanced brackets, closed strings and the characters of its scalars, not decoded: a value no rule
//! reads cannot change an answer, and the API server only sends JSON it wrote itself.

/// Nesting deeper than this is refused (serde_json's own limit is 128).
const MAX_DEPTH: u32 = 128;

/// A cursor over a JSON text. Each byte is looked at once: a value is either decoded, entered, or
/// stepped over.
pub(crate) struct Reader<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(text: &'a str) -> Reader<'a> {
        Reader { text, i: 0 }
    }

    fn expected(&self, what: &str) -> String {
        format!("expected {what} at byte {}", self.i)
    }

    fn ws(&mut self) -> Option<u8> {
        self.i = skip_ws(self.text.as_bytes(), self.i);
        self.text.as_bytes().get(self.i).copied()
    }

    /// Whether the next value is `null` (then consumed).
    pub(crate) fn null(&mut self) -> bool {
        self.ws();
        let null = self.text[self.i..].starts_with("null");
        if null {
            self.i += 4;
        }
        null
    }

    /// Calls `each` with every key of the object that comes next, the reader at the key's value. `each`
    /// decodes the value, enters it, or leaves it: a value it leaves is stepped over. `null` is an
    /// object without members; anything else is an error.
    pub(crate) fn members(
        &mut self,
        mut each: impl FnMut(&mut Reader<'a>, &str) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.null() {
            return Ok(());
        }
        if self.ws() != Some(b'{') {
            return Err(self.expected("an object"));
        }
        self.i += 1;
        if self.ws() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.ws() != Some(b'"') {
                return Err(self.expected("a key"));
            }
            let start = self.i;
            let end =
                string_end(self.text.as_bytes(), start + 1).ok_or_else(|| self.expected("a closed key"))?;
            let raw = &self.text[start..end];
            self.i = end;
            if self.ws() != Some(b':') {
                return Err(self.expected("':'"));
            }
            self.i += 1;
            self.ws();
            let at = self.i;
            if raw.contains('\\') {
                let key: String =
                    serde_json::from_str(raw).map_err(|e| format!("{e} in the key at byte {start}"))?;
                each(self, &key)?;
            } else {
                each(self, &raw[1..raw.len() - 1])?;
            }
            if self.i == at {
                self.skip()?;
            }
            match self.ws() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(self.expected("',' or '}'")),
            }
        }
    }

    /// The value that comes next decoded by serde_json, the reader past it if it decoded; `None` if no
    /// value is left.
    fn next_value<T: serde::Deserialize<'a>>(&mut self) -> Option<Result<T, serde_json::Error>> {
        self.ws();
        let mut values = serde_json::Deserializer::from_str(&self.text[self.i..]).into_iter::<T>();
        let value = values.next()?;
        if value.is_ok() {
            self.i += values.byte_offset();
        }
        Some(value)
    }

    /// The value that comes next, decoded by serde_json.
    pub(crate) fn decode<T: serde::Deserialize<'a>>(&mut self) -> Result<T, String> {
        self.ws();
        let at = self.i;
        match self.next_value() {
            Some(Ok(value)) => Ok(value),
            Some(Err(e)) => Err(format!("{e} (in the value at byte {at})")),
            None => Err(self.expected("a value")),
        }
    }

    /// The string that comes next, borrowed from the body when it has no escapes (most do not), `None` for
    /// `null`.
    pub(crate) fn string(&mut self) -> Result<Option<std::borrow::Cow<'a, str>>, String> {
        if self.null() {
            return Ok(None);
        }
        if self.ws() == Some(b'"')
            && let Some(end) = string_end(self.text.as_bytes(), self.i + 1)
        {
            let inner = &self.text[self.i + 1..end - 1];
            // Escapes and control characters (which JSON refuses) go through serde_json.
            if !inner.bytes().any(|b| b == b'\\' || b < 0x20) {
                self.i = end;
                return Ok(Some(std::borrow::Cow::Borrowed(inner)));
            }
        }
        self.decode::<String>().map(|s| Some(std::borrow::Cow::Owned(s)))
    }

    /// [`Self::string`], owned.
    pub(crate) fn optional_string(&mut self) -> Result<Option<String>, String> {
        Ok(self.string()?.map(std::borrow::Cow::into_owned))
    }

    /// [`Self::string`], owned, with `null` as empty (Go's zero value, as the API server reads it).
    pub(crate) fn owned_string(&mut self) -> Result<String, String> {
        Ok(self.optional_string()?.unwrap_or_default())
    }

    /// The value that comes next decoded by serde_json, or the decoder's message if it does not decode
    /// (the value is then stepped over): an error of the value, not of the body.
    pub(crate) fn decode_or_keep_error<T: serde::de::DeserializeOwned>(
        &mut self,
    ) -> Result<Result<T, String>, String> {
        match self.next_value() {
            Some(Ok(value)) => Ok(Ok(value)),
            Some(Err(e)) => {
                self.skip()?;
                Ok(Err(e.to_string()))
            }
            None => Err(self.expected("a value")),
        }
    }

    /// The text of the value that comes next, stepped over.
    pub(crate) fn raw(&mut self) -> Result<&'a str, String> {
        self.ws();
        let start = self.i;
        self.skip()?;
        Ok(&self.text[start..self.i])
    }

    /// Steps over the value that comes next.
    pub(crate) fn skip(&mut self) -> Result<(), String> {
        self.ws();
        match skip_value(self.text.as_bytes(), self.i) {
            Ok(end) => {
                self.i = end;
                Ok(())
            }
            Err((at, what)) => {
                self.i = at;
                Err(self.expected(what))
            }
        }
    }

    /// Nothing but whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), String> {
        match self.ws() {
            None => Ok(()),
            Some(_) => Err(self.expected("the end of the body")),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the value that starts at `i`, or where and what was expected.
fn skip_value(b: &[u8], mut i: usize) -> Result<usize, (usize, &'static str)> {
    // The open brackets as bits, 1 for an object: enough for MAX_DEPTH.
    let mut open: u128 = 0;
    let mut depth: u32 = 0;
    loop {
        let Some(&c) = b.get(i) else { return Err((i, "a value")) };
        let at = i;
        i += 1;
        match c {
            b'"' => i = string_end(b, i).ok_or((at, "a closed string"))?,
            b'{' | b'[' => {
                if depth == MAX_DEPTH {
                    return Err((at, "less nesting"));
                }
                open = (open << 1) | u128::from(c == b'{');
                depth += 1;
                continue;
            }
            b'}' | b']' => {
                if depth == 0 || (open & 1 == 1) != (c == b'}') {
                    return Err((at, "a matching bracket"));
                }
                open >>= 1;
                depth -= 1;
            }
            b' ' | b'\n' | b'\r' | b'\t' | b',' | b':' if depth > 0 => continue,
            b'0'..=b'9' | b'-' | b't' | b'f' | b'n' => {
                while matches!(b.get(i), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'a'..=b'z')) {
                    i += 1;
                }
            }
            _ => return Err((at, "a value")),
        }
        if depth == 0 {
            return Ok(i);
        }
    }
}

/// The index just past the closing quote of the string whose contents start at `i`. Eight bytes at a
/// time: a JSON string is mostly neither a quote nor a backslash.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::MAX / 255;
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().ok()?);
            let quote = word ^ (ONES * u64::from(b'"'));
            let backslash = word ^ (ONES * u64::from(b'\\'));
            // The high bit of each byte that is a quote or a backslash (exact for the lowest one).
            let hit = ((quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash))
                & (ONES << 7);
            if hit != 0 {
                i += hit.trailing_zeros() as usize / 8;
                break;
            }
            i += 8;
        }
        while !matches!(b.get(i)?, b'"' | b'\\') {
            i += 1;
        }
        if b[i] == b'"' {
            return Some(i + 1);
        }
        // An escape: the byte after the backslash never ends the string.
        i += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stepped_over_value_ends_where_serde_json_says_it_does() {
        let values = [
            r#"{"a":[1,2,{"b":"c\"}"}],"d":null}"#,
            r#""a string with \\ and \" and é""#,
            r#"[[[]],{},"]",-1.5e+3,true,false,null]"#,
            r#"{"k:{\"name\":\"c0\"}":{".":{},"f:image":{}}}"#,
            "12345678901234567890",
            r#""0123456789abcdef\"0123456789""#,
        ];
        for v in values {
            let padded = format!("{v} , 1");
            let mut de = serde_json::Deserializer::from_str(&padded).into_iter::<serde::de::IgnoredAny>();
            assert!(de.next().is_some_and(|r| r.is_ok()), "{v}");
            assert_eq!(skip_value(padded.as_bytes(), 0), Ok(de.byte_offset()), "{v}");
        }
    }

    #[test]
    fn unbalanced_unclosed_or_foreign_values_are_refused() {
        for bad in [r#"{"a":1"#, r#"{"a":[1}"#, r#""open"#, r#"{"a":"b\"}"#, "", "}", "@", "[1,@]"] {
            assert!(Reader::new(bad).skip().is_err(), "{bad}");
        }
        assert!(skip_value("[".repeat(129).as_bytes(), 0).is_err());
        assert!(skip_value(format!("{}{}", "[".repeat(128), "]".repeat(128)).as_bytes(), 0).is_ok());
    }

    /// The keys and values of an object, as the caller sees them.
    fn walk(text: &str) -> Result<Vec<(String, String)>, String> {
        let mut r = Reader::new(text);
        let mut seen = Vec::new();
        r.members(|r, key| {
            let value = match key {
                "skipped" => "-".to_string(),
                "obj" => {
                    let mut inner = Vec::new();
                    r.members(|r, k| {
                        inner.push(format!("{k}={}", r.decode::<serde_json::Value>()?));
                        Ok(())
                    })?;
                    inner.join(",")
                }
                _ => r.decode::<serde_json::Value>()?.to_string(),
            };
            seen.push((key.to_string(), value));
            Ok(())
        })?;
        r.end()?;
        Ok(seen)
    }

    #[test]
    fn members_give_decoded_keys_entered_objects_and_decoded_values() {
        let got = walk(
            r#" { "a" : 1 , "b\u0041" : [2], "skipped": {"x": [3]}, "obj": {"c": "d", "e": null}, "n": null } "#,
        );
        let want = [("a", "1"), ("bA", "[2]"), ("skipped", "-"), ("obj", r#"c="d",e=null"#), ("n", "null")];
        assert_eq!(got, Ok(want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
    }

    #[test]
    fn null_and_empty_objects_have_no_members() {
        assert_eq!(walk("null"), Ok(vec![]));
        assert_eq!(walk(" { } "), Ok(vec![]));
    }

    #[test]
    fn a_malformed_object_says_where() {
        assert_eq!(walk(r#"{"a": 1 "b": 2}"#), Err("expected ',' or '}' at byte 8".into()));
        assert_eq!(walk("[1]"), Err("expected an object at byte 0".into()));
        assert_eq!(walk(r#"{"a": 1} x"#), Err("expected the end of the body at byte 9".into()));
        assert_eq!(walk(r#"{"a" 1}"#), Err("expected ':' at byte 5".into()));
        assert_eq!(walk(r#"{"skipped": [1}"#), Err("expected a matching bracket at byte 14".into()));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_null_is_none() {
        let string = |text: &'static str| Reader::new(text).string();
        assert!(matches!(string(r#" "plain""#), Ok(Some(std::borrow::Cow::Borrowed("plain")))));
        assert!(matches!(string(r#""esc\"aped""#), Ok(Some(std::borrow::Cow::Owned(s))) if s == "esc\"aped"));
        assert_eq!(string("null"), Ok(None));
        // A control character, which JSON refuses, is refused.
        assert!(string("\"ctrl\u{1}\"").is_err_and(|e| e.contains("control character")));
        assert!(string("3").is_err_and(|e| e.contains("invalid type: integer `3`, expected a string")));
    }

    #[test]
    fn a_value_that_does_not_decode_is_kept_as_its_error_and_stepped_over() {
        let mut r = Reader::new(r#"{"spec": {"n": "two"}, "after": 1}"#);
        let (mut spec, mut after) = (None, None);
        r.members(|r, key| {
            match key {
                "spec" => spec = Some(r.decode_or_keep_error::<std::collections::BTreeMap<String, i32>>()?),
                "after" => after = Some(r.decode::<i32>()?),
                _ => {}
            }
            Ok(())
        })
        .expect("a readable object");
        assert!(spec.is_some_and(|s| s.is_err_and(|e| e.contains("invalid type: string \"two\""))));
        assert_eq!(after, Some(1));
    }
}
