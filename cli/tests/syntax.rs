//! The shell's input syntax: a table of lines and what each gives, completion contexts, and
//! property checks over the table.

use qmp_cli::syntax::{
    build_request, completion_context, hmp_request, hmp_request_on_cpu, parse_value, split_words,
    Completion, Parsed, Parser, SyntaxError,
};
use serde_json::{json, Value};

/// What one line is expected to give.
#[derive(Debug, Clone)]
enum Exp {
    Nothing,
    Request(Value),
    Error(String),
}

/// A sequence of lines fed to one parser, each with what it must give.
struct Case {
    name: &'static str,
    lines: Vec<(String, Exp)>,
}

fn case(name: &'static str, lines: Vec<(&str, Exp)>) -> Case {
    Case {
        name,
        lines: lines
            .into_iter()
            .map(|(line, exp)| (line.to_owned(), exp))
            .collect(),
    }
}

fn req(value: Value) -> Exp {
    Exp::Request(value)
}

fn err(message: &str) -> Exp {
    Exp::Error(message.to_owned())
}

/// `{"execute": command, "arguments": arguments}`.
fn cmd(command: &str, arguments: Value) -> Exp {
    req(json!({"execute": command, "arguments": arguments}))
}

/// The transaction request with these actions.
fn trans(actions: Value) -> Exp {
    cmd("transaction", json!({ "actions": actions }))
}

/// One line, one outcome.
fn one(name: &'static str, line: &str, exp: Exp) -> Case {
    case(name, vec![(line, exp)])
}

fn outcome(result: Result<Parsed, SyntaxError>) -> Result<Option<Value>, String> {
    match result {
        Ok(Parsed::Nothing) => Ok(None),
        Ok(Parsed::Request(map)) => Ok(Some(Value::Object(map))),
        Err(error) => Err(error.to_string()),
    }
}

fn expected(exp: &Exp) -> Result<Option<Value>, String> {
    match exp {
        Exp::Nothing => Ok(None),
        Exp::Request(value) => Ok(Some(value.clone())),
        Exp::Error(message) => Err(message.clone()),
    }
}

fn deep(levels: usize) -> String {
    format!("x a={}{}", "[".repeat(levels), "]".repeat(levels))
}

fn nested_value(levels: usize) -> Value {
    let mut value = json!([]);
    for _ in 1..levels {
        value = json!([value]);
    }
    value
}

fn cases() -> Vec<Case> {
    use Exp::Nothing;
    vec![
        // --- The reference's examples -------------------------------------------------
        one(
            "docstring: device_add",
            "device_add driver=e1000 id=net1",
            cmd("device_add", json!({"driver": "e1000", "id": "net1"})),
        ),
        one(
            "docstring: compound value (not valid even as Python: '=' after 'obj')",
            r#"example-command arg-name1={'key':'value','obj'={'prop':"value"}}"#,
            err(concat!(
                r#"Invalid value for "arg-name1": {'key':'value','obj'={'prop':"value"}} "#,
                "is neither JSON nor a Python literal: expected ':' after a key at column 21"
            )),
        ),
        one(
            "docstring: compound value, corrected",
            r#"example-command arg-name1={'key':'value','obj':{'prop':"value"}}"#,
            cmd(
                "example-command",
                json!({"arg-name1": {"key": "value", "obj": {"prop": "value"}}}),
            ),
        ),
        case(
            "docstring: multi-line transaction",
            vec![
                ("transaction(", Nothing),
                ("block-dirty-bitmap-add node=drive0 name=bitmap1", Nothing),
                ("block-dirty-bitmap-clear node=drive0 name=bitmap0", Nothing),
                (
                    ")",
                    trans(json!([
                        {"type": "block-dirty-bitmap-add",
                         "data": {"node": "drive0", "name": "bitmap1"}},
                        {"type": "block-dirty-bitmap-clear",
                         "data": {"node": "drive0", "name": "bitmap0"}},
                    ])),
                ),
            ],
        ),
        one(
            "docstring: one-line transaction",
            "transaction( block-dirty-bitmap-add node=drive0 name=bitmap1 )",
            trans(json!([
                {"type": "block-dirty-bitmap-add", "data": {"node": "drive0", "name": "bitmap1"}},
            ])),
        ),
        one(
            "docstring: JSON and Python literal paradigms",
            "x a=[null,true,false,None,True,False]",
            cmd("x", json!({"a": [null, true, false, null, true, false]})),
        ),
        // --- Words ----------------------------------------------------------------------
        one(
            "command without arguments",
            "query-status",
            cmd("query-status", json!({})),
        ),
        one(
            "surrounding and repeated blanks",
            " \t query-status \t verbose=1   ",
            cmd("query-status", json!({"verbose": 1})),
        ),
        one(
            "word without =",
            "query-status verbose",
            err("Expected a key=value pair, got 'verbose'"),
        ),
        one(
            "double-quoted value with spaces",
            r#"set_password protocol=vnc password="a b  c""#,
            cmd(
                "set_password",
                json!({"protocol": "vnc", "password": "a b  c"}),
            ),
        ),
        one(
            "single-quoted value",
            "x name='x y'",
            cmd("x", json!({"name": "x y"})),
        ),
        one(
            "escaped quotes inside quotes",
            r#"x a="say \"hi\"" b='it\'s'"#,
            cmd("x", json!({"a": "say \"hi\"", "b": "it's"})),
        ),
        one(
            "other quote kind inside quotes",
            r#"x a="it's" b='say "hi"'"#,
            cmd("x", json!({"a": "it's", "b": "say \"hi\""})),
        ),
        one(
            "backslashes inside quotes: \\\\ is one, others kept",
            r#"x path="C:\\dir\new""#,
            cmd("x", json!({"path": "C:\\dir\\new"})),
        ),
        one(
            "backslash outside quotes is ordinary",
            r"x path=C:\dir",
            cmd("x", json!({"path": "C:\\dir"})),
        ),
        one(
            "quotes not wholly enclosing the value are kept",
            r#"x name=a"b c"d e="x"y"#,
            cmd("x", json!({"name": "a\"b c\"d", "e": "\"x\"y"})),
        ),
        one(
            "unterminated double quote",
            r#"x name="abc"#,
            err(r#"Missing closing " quote in: name="abc"#),
        ),
        one(
            "unterminated single quote with a space",
            "x name='abc def",
            err("Missing closing ' quote in: name='abc def"),
        ),
        one(
            "a closing quote escaped is no closing quote",
            r#"x name="a\""#,
            err(r#"Missing closing " quote in: name="a\""#),
        ),
        one(
            "= inside quotes does not split",
            r#"x "a=b""#,
            err(r#"Expected a key=value pair, got '"a=b"'"#),
        ),
        one(
            "value containing =",
            "x a=b=c",
            cmd("x", json!({"a": "b=c"})),
        ),
        one(
            "empty values",
            r#"x a= b="" c=''"#,
            cmd("x", json!({"a": "", "b": "", "c": ""})),
        ),
        one(
            "unicode values",
            "x name=héllo",
            cmd("x", json!({"name": "héllo"})),
        ),
        // --- Values -----------------------------------------------------------------------
        one(
            "integers",
            "x a=42 b=-7 c=+5 d=007 e=0 f=-0",
            cmd(
                "x",
                json!({"a": 42, "b": -7, "c": 5, "d": 7, "e": 0, "f": 0}),
            ),
        ),
        one(
            "64-bit integer bounds",
            "x a=9223372036854775807 b=-9223372036854775808 c=18446744073709551615",
            cmd("x", json!({"a": i64::MAX, "b": i64::MIN, "c": u64::MAX})),
        ),
        one(
            "integer beyond u64",
            "x a=18446744073709551616",
            err(r#"Invalid value for "a": 18446744073709551616 does not fit in 64 bits"#),
        ),
        one(
            "integer beyond i64",
            "x a=-9223372036854775809",
            err(r#"Invalid value for "a": -9223372036854775809 does not fit in 64 bits"#),
        ),
        one(
            "booleans in any case",
            "x a=true b=False c=TRUE d=fAlSe",
            cmd("x", json!({"a": true, "b": false, "c": true, "d": false})),
        ),
        one(
            "floats are numbers",
            "x a=1.5 b=-0.25 c=2. d=.5 e=1e3 f=1E-2 g=+1.5e+2",
            cmd(
                "x",
                json!({"a": 1.5, "b": -0.25, "c": 2.0, "d": 0.5, "e": 1000.0, "f": 0.01, "g": 150.0}),
            ),
        ),
        one(
            "float overflow",
            "x a=1e400",
            err(r#"Invalid value for "a": 1e400 is out of range for a number"#),
        ),
        one(
            "not numbers: strings",
            "x a=inf b=nan c=-inf d=0x10 e=1_000 f=1.2.3 g=10.0.0.1 h=1e i=abc j=- k=.",
            cmd(
                "x",
                json!({"a": "inf", "b": "nan", "c": "-inf", "d": "0x10", "e": "1_000",
                       "f": "1.2.3", "g": "10.0.0.1", "h": "1e", "i": "abc", "j": "-", "k": "."}),
            ),
        ),
        one(
            "null and None outside JSON are strings",
            "chardev-add id=c0 backend.type=null backend.data={} x=None y=none",
            cmd(
                "chardev-add",
                json!({"id": "c0", "backend": {"type": "null", "data": {}}, "x": "None", "y": "none"}),
            ),
        ),
        one(
            "quotes force a string",
            r#"x a="1" b='true' c="{a}" d='[1]' e="1.5""#,
            cmd(
                "x",
                json!({"a": "1", "b": "true", "c": "{a}", "d": "[1]", "e": "1.5"}),
            ),
        ),
        one(
            "JSON object and arrays",
            r#"x a={"b":1,"c":[true,null,"s"]} d=[1,2,3] e=[] f={}"#,
            cmd(
                "x",
                json!({"a": {"b": 1, "c": [true, null, "s"]}, "d": [1, 2, 3], "e": [], "f": {}}),
            ),
        ),
        one(
            "JSON with a quoted space stays one word",
            r#"x a={"k":"v w"}"#,
            cmd("x", json!({"a": {"k": "v w"}})),
        ),
        one(
            "JSON integer beyond u64 reads as a float, as QEMU reads it",
            "x a=[18446744073709551616]",
            cmd("x", json!({"a": [18446744073709551616.0]})),
        ),
        one(
            "Python literal dict",
            "x a={'b':'c','d':None,'e':True,'f':false,'g':null,'h':-1.5}",
            cmd(
                "x",
                json!({"a": {"b": "c", "d": null, "e": true, "f": false, "g": null, "h": -1.5}}),
            ),
        ),
        one(
            "Python trailing commas",
            "x a=[1,2,] b={'k':1,} c=[[],{},]",
            cmd("x", json!({"a": [1, 2], "b": {"k": 1}, "c": [[], {}]})),
        ),
        one(
            "Python lone comma",
            "x a=[,]",
            err(concat!(
                r#"Invalid value for "a": [,] is neither JSON nor a Python literal: "#,
                "unexpected character ',' at column 2"
            )),
        ),
        one(
            "Python string escapes",
            r"x a=['\x41\u00e9\n\t\101\q\\\'']",
            cmd("x", json!({"a": ["A\u{e9}\n\tA\\q\\'"]})),
        ),
        one(
            "Python surrogate pair",
            r"x a=['\ud83d\ude00','\U0001F600']",
            cmd("x", json!({"a": ["\u{1F600}", "\u{1F600}"]})),
        ),
        one(
            "Python lone surrogate",
            r"x a=['\ud83d']",
            err(concat!(
                r#"Invalid value for "a": ['\ud83d'] is neither JSON nor a Python literal: "#,
                "escape for U+D83D is not a character (a lone surrogate?) at column 3"
            )),
        ),
        one(
            "Python hex, octal and binary integers",
            "x a=[0x1F,-0o17,0b101,0XfF]",
            cmd("x", json!({"a": [31, -15, 5, 255]})),
        ),
        one(
            "Python integer beyond 64 bits",
            "x a=[0x10000000000000000]",
            err(concat!(
                r#"Invalid value for "a": [0x10000000000000000] is neither JSON nor a Python literal: "#,
                "0x10000000000000000 does not fit in 64 bits at column 2"
            )),
        ),
        one(
            "Python leading zeros",
            "x a=[007]",
            err(concat!(
                r#"Invalid value for "a": [007] is neither JSON nor a Python literal: "#,
                "leading zeros are not allowed in a Python integer at column 2"
            )),
        ),
        one(
            "Python unknown name",
            "x a={'k':foo}",
            err(concat!(
                r#"Invalid value for "a": {'k':foo} is neither JSON nor a Python literal: "#,
                "unknown name 'foo' (strings need quotes) at column 6"
            )),
        ),
        one(
            "Python non-string key",
            "x a={1:2}",
            err(concat!(
                r#"Invalid value for "a": {1:2} is neither JSON nor a Python literal: "#,
                "expected a string key at column 2"
            )),
        ),
        one(
            "Python set (the reference crashed on it)",
            "x a={'a','b'}",
            err(concat!(
                r#"Invalid value for "a": {'a','b'} is neither JSON nor a Python literal: "#,
                "expected ':' after a key at column 5"
            )),
        ),
        one(
            "Python tuple",
            "x a=[(1)]",
            err(concat!(
                r#"Invalid value for "a": [(1)] is neither JSON nor a Python literal: "#,
                "unexpected character '(' at column 2"
            )),
        ),
        one(
            "garbage after a compound value",
            "x a=[1]x",
            err(concat!(
                r#"Invalid value for "a": [1]x is neither JSON nor a Python literal: "#,
                "unexpected input after the value at column 4"
            )),
        ),
        one(
            "unfinished compound value",
            "x a=[1,",
            err(concat!(
                r#"Invalid value for "a": [1, is neither JSON nor a Python literal: "#,
                "missing value at the end"
            )),
        ),
        one(
            "a space inside a compound value splits the word",
            "x a={'k': 1}",
            err(concat!(
                r#"Invalid value for "a": {'k': is neither JSON nor a Python literal: "#,
                "missing value at the end"
            )),
        ),
        Case {
            name: "128 levels of nesting",
            lines: vec![(deep(128), cmd("x", json!({ "a": nested_value(128) })))],
        },
        Case {
            name: "129 levels of nesting",
            lines: vec![(
                deep(129),
                err(&format!(
                    "Invalid value for \"a\": {}{} is neither JSON nor a Python literal: \
                     nested more than 128 levels deep at column 129",
                    "[".repeat(129),
                    "]".repeat(129)
                )),
            )],
        },
        // --- Keys -------------------------------------------------------------------------
        one(
            "dotted keys",
            "x a.b=1 a.c=2",
            cmd("x", json!({"a": {"b": 1, "c": 2}})),
        ),
        one(
            "blockdev-add with nested options",
            "blockdev-add driver=qcow2 node-name=disk file.driver=file \
             file.filename=/tmp/a.qcow2 cache.direct=true cache.no-flush=false",
            cmd(
                "blockdev-add",
                json!({"driver": "qcow2", "node-name": "disk",
                       "file": {"driver": "file", "filename": "/tmp/a.qcow2"},
                       "cache": {"direct": true, "no-flush": false}}),
            ),
        ),
        one(
            "three levels",
            "x a.b.c=1 a.b.d=2 a.e=3",
            cmd("x", json!({"a": {"b": {"c": 1, "d": 2}, "e": 3}})),
        ),
        one(
            "duplicate key",
            "x a=1 a=2",
            err(r#"Cannot set "a" multiple times"#),
        ),
        one(
            "duplicate dotted key",
            "x a.b=1 a.b=2",
            err(r#"Cannot set "a.b" multiple times"#),
        ),
        one(
            "leaf then non-leaf",
            "x a=1 a.b=2",
            err(r#"Cannot use "a" as both leaf and non-leaf key"#),
        ),
        one(
            "non-leaf then leaf (the reference named an empty key)",
            "x a.b=2 a=1",
            err(r#"Cannot use "a" as both leaf and non-leaf key"#),
        ),
        one(
            "deeper leaf then non-leaf",
            "x a.b=1 a.b.c=2",
            err(r#"Cannot use "a.b" as both leaf and non-leaf key"#),
        ),
        one(
            "deeper non-leaf then leaf",
            "x a.b.c=1 a.b=2",
            err(r#"Cannot use "a.b" as both leaf and non-leaf key"#),
        ),
        one(
            "a JSON value is a leaf",
            r#"x a={"b":1} a.c=2"#,
            err(r#"Cannot use "a" as both leaf and non-leaf key"#),
        ),
        one(
            "a JSON value is a leaf, other order",
            r#"x a.c=2 a={"b":1}"#,
            err(r#"Cannot use "a" as both leaf and non-leaf key"#),
        ),
        one("empty key", "x =1", err("Missing key before '=' in '=1'")),
        one(
            "empty middle name",
            "x a..b=1",
            err("Empty name in dotted key 'a..b'"),
        ),
        one(
            "empty first name",
            "x .a=1",
            err("Empty name in dotted key '.a'"),
        ),
        one(
            "empty last name",
            "x a.=1",
            err("Empty name in dotted key 'a.'"),
        ),
        one(
            "the first bad word is reported",
            "x a=1 b c..d=2",
            err("Expected a key=value pair, got 'b'"),
        ),
        // --- Raw JSON -----------------------------------------------------------------------
        one(
            "raw JSON object, sent as is",
            r#"{"execute":"query-status"}"#,
            req(json!({"execute": "query-status"})),
        ),
        one(
            "raw JSON after blanks, id kept",
            r#"   {"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "x"}  "#,
            req(
                json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "x"}),
            ),
        ),
        one(
            "raw JSON truncated",
            r#"{"execute":"#,
            err("Invalid JSON object: EOF while parsing a value at line 1 column 11"),
        ),
        one(
            "raw JSON with Python quotes",
            "{'execute':'x'}",
            err("Invalid JSON object: key must be a string at line 1 column 2"),
        ),
        one(
            "raw JSON followed by text",
            r#"{"execute":"a"} x"#,
            err("Unexpected input after the JSON object: x"),
        ),
        one(
            "raw JSON followed by another object",
            r#"{"execute":"a"}{"execute":"b"}"#,
            err(r#"Unexpected input after the JSON object: {"execute":"b"}"#),
        ),
        one(
            "a line starting with [ is a command word",
            "[1]",
            cmd("[1]", json!({})),
        ),
        // --- Empty lines and comments -----------------------------------------------------
        one("empty line", "", Nothing),
        one("blank line", "  \t ", Nothing),
        one("comment", "# a comment", Nothing),
        one("indented comment", "   #x=1", Nothing),
        one(
            "# later in a line is text",
            "query-status # not a comment",
            err("Expected a key=value pair, got '#'"),
        ),
        one(
            "# inside a value is text",
            "x file=/tmp/a#b",
            cmd("x", json!({"file": "/tmp/a#b"})),
        ),
        // --- Transactions ---------------------------------------------------------------
        one(
            "one-line transaction without arguments",
            "transaction( abort )",
            trans(json!([{"type": "abort", "data": {}}])),
        ),
        one(
            "empty one-line transaction",
            "transaction( )",
            trans(json!([])),
        ),
        case(
            "empty multi-line transaction",
            vec![("transaction(", Nothing), (")", trans(json!([])))],
        ),
        case(
            "action on the transaction( line, more on the next",
            vec![
                ("transaction( a x=1", Nothing),
                (
                    "b y.z=2 )",
                    trans(json!([
                        {"type": "a", "data": {"x": 1}},
                        {"type": "b", "data": {"y": {"z": 2}}},
                    ])),
                ),
            ],
        ),
        case(
            "input after ) is an error and keeps the transaction",
            vec![
                ("transaction(", Nothing),
                ("a", Nothing),
                (
                    ") x",
                    err("Unexpected input after close of Transaction sub-shell"),
                ),
                (")", trans(json!([{"type": "a", "data": {}}]))),
            ],
        ),
        case(
            "one-line transaction with input after )",
            vec![
                (
                    "transaction( ) x",
                    err("Unexpected input after close of Transaction sub-shell"),
                ),
                ("query-status", cmd("query-status", json!({}))),
            ],
        ),
        case(
            "a bad one-line transaction leaves none open",
            vec![
                (
                    "transaction( a x )",
                    err("Expected a key=value pair, got 'x'"),
                ),
                ("query-status", cmd("query-status", json!({}))),
            ],
        ),
        case(
            "a ) not last on an action line is a word",
            vec![
                (
                    "transaction( a ) x",
                    err("Expected a key=value pair, got ')'"),
                ),
                (
                    ")",
                    err("')' closes a transaction, but no transaction is open"),
                ),
            ],
        ),
        case(
            "a bad action line keeps the transaction and its actions",
            vec![
                ("transaction(", Nothing),
                ("a n=1", Nothing),
                ("b x", err("Expected a key=value pair, got 'x'")),
                ("c y=1 y=2 )", err(r#"Cannot set "y" multiple times"#)),
                (
                    "c y=2 )",
                    trans(json!([
                        {"type": "a", "data": {"n": 1}},
                        {"type": "c", "data": {"y": 2}},
                    ])),
                ),
            ],
        ),
        case(
            "nested transaction( is an error (the reference dropped the actions)",
            vec![
                ("transaction(", Nothing),
                ("a", Nothing),
                (
                    "transaction(",
                    err("Already in a transaction: close it with ')' before starting another"),
                ),
                (
                    "transaction( b )",
                    err("Already in a transaction: close it with ')' before starting another"),
                ),
                (")", trans(json!([{"type": "a", "data": {}}]))),
            ],
        ),
        one(
            ") outside a transaction",
            ")",
            err("')' closes a transaction, but no transaction is open"),
        ),
        case(
            "raw JSON action",
            vec![
                ("transaction(", Nothing),
                (r#"{"type":"abort","data":{}}"#, Nothing),
                ("b x=1", Nothing),
                (
                    ")",
                    trans(json!([
                        {"type": "abort", "data": {}},
                        {"type": "b", "data": {"x": 1}},
                    ])),
                ),
            ],
        ),
        case(
            "raw JSON action closing the transaction",
            vec![
                ("transaction(", Nothing),
                (r#"  {"type":"abort"} )"#, trans(json!([{"type": "abort"}]))),
            ],
        ),
        one(
            "one-line transaction with a raw JSON action",
            r#"transaction( {"type": "abort", "data": {}} )"#,
            trans(json!([{"type": "abort", "data": {}}])),
        ),
        case(
            "a raw JSON command inside a transaction",
            vec![
                ("transaction(", Nothing),
                (
                    r#"{"execute":"query-status"}"#,
                    err(
                        r#"A JSON line inside a transaction is one action: it needs a "type" member"#,
                    ),
                ),
                (
                    r#"{"type":"abort"} x"#,
                    err("Unexpected input after the JSON object: x"),
                ),
                (")", trans(json!([]))),
            ],
        ),
        case(
            "blank lines and comments inside a transaction",
            vec![
                ("transaction(", Nothing),
                ("", Nothing),
                ("# first", Nothing),
                ("a", Nothing),
                ("   ", Nothing),
                (")", trans(json!([{"type": "a", "data": {}}]))),
            ],
        ),
        case(
            "consecutive transactions start afresh",
            vec![
                (
                    "transaction( a )",
                    trans(json!([{"type": "a", "data": {}}])),
                ),
                ("transaction(", Nothing),
                ("b", Nothing),
                (")", trans(json!([{"type": "b", "data": {}}]))),
            ],
        ),
        case(
            "transaction action with nested data",
            vec![
                ("transaction(", Nothing),
                (
                    "blockdev-snapshot-sync node-name=n0 snapshot-file=/tmp/s.qcow2 format=qcow2",
                    Nothing,
                ),
                (
                    "drive-backup device=d0 target=/tmp/b sync=full x.y=[1] )",
                    trans(json!([
                        {"type": "blockdev-snapshot-sync",
                         "data": {"node-name": "n0", "snapshot-file": "/tmp/s.qcow2", "format": "qcow2"}},
                        {"type": "drive-backup",
                         "data": {"device": "d0", "target": "/tmp/b", "sync": "full", "x": {"y": [1]}}},
                    ])),
                ),
            ],
        ),
        one(
            "the transaction command typed in full",
            r#"transaction actions=[{"type":"abort","data":{}}]"#,
            cmd(
                "transaction",
                json!({"actions": [{"type": "abort", "data": {}}]}),
            ),
        ),
        one(
            "transaction( must be its own word",
            "transaction(abort",
            cmd("transaction(abort", json!({})),
        ),
        case(
            ") must be its own word",
            vec![
                ("transaction(", Nothing),
                ("a x=1)", Nothing),
                (")", trans(json!([{"type": "a", "data": {"x": "1)"}}]))),
            ],
        ),
    ]
}

#[test]
fn table() {
    let mut failures = Vec::new();
    for case in cases() {
        let mut parser = Parser::new();
        for (index, (line, exp)) in case.lines.iter().enumerate() {
            let got = outcome(parser.parse_line(line));
            let want = expected(exp);
            if got != want {
                failures.push(format!(
                    "{} (line {index}: {line:?}):\n   got {got:?}\n  want {want:?}",
                    case.name
                ));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn prompt_state_follows_the_transaction() {
    let mut parser = Parser::new();
    assert!(!parser.in_transaction());
    parser.parse_line("transaction(").unwrap();
    assert!(parser.in_transaction());
    parser.parse_line("a").unwrap();
    parser.parse_line("b x=1").unwrap();
    assert_eq!(
        parser.actions(),
        [
            json!({"type": "a", "data": {}}),
            json!({"type": "b", "data": {"x": 1}})
        ]
    );
    parser.parse_line("c x").unwrap_err();
    assert!(parser.in_transaction());
    assert_eq!(parser.actions().len(), 2);
    parser.parse_line(")").unwrap();
    assert!(!parser.in_transaction());
    assert!(parser.actions().is_empty());

    // A bad one-liner leaves no transaction open.
    parser.parse_line("transaction( a x )").unwrap_err();
    assert!(!parser.in_transaction());
    // An unfinished one-liner leaves one open.
    parser.parse_line("transaction( a x=1").unwrap();
    assert!(parser.in_transaction());
    assert_eq!(parser.actions().len(), 1);
}

#[test]
fn cancel_transaction() {
    let mut parser = Parser::new();
    assert_eq!(parser.cancel_transaction(), 0);
    parser.parse_line("transaction(").unwrap();
    assert_eq!(parser.cancel_transaction(), 0);
    assert!(!parser.in_transaction());
    parser.parse_line("transaction( a").unwrap();
    parser.parse_line("b").unwrap();
    assert_eq!(parser.cancel_transaction(), 2);
    assert!(!parser.in_transaction());
    assert_eq!(parser.cancel_transaction(), 0);
    // After a cancel, ')' is out of place and a new transaction starts empty.
    assert_eq!(
        parser.parse_line(")").unwrap_err().to_string(),
        "')' closes a transaction, but no transaction is open"
    );
    parser.parse_line("transaction(").unwrap();
    assert_eq!(
        outcome(parser.parse_line(")")),
        Ok(Some(
            json!({"execute": "transaction", "arguments": {"actions": []}})
        ))
    );
    assert_eq!(Parser::default(), Parser::new());
}

#[test]
fn parse_value_table() {
    let ok = [
        ("0", json!(0)),
        ("-12", json!(-12)),
        ("18446744073709551615", json!(u64::MAX)),
        ("1.25", json!(1.25)),
        ("-1e-3", json!(-0.001)),
        ("True", json!(true)),
        ("FALSE", json!(false)),
        ("null", json!("null")),
        ("None", json!("None")),
        ("inf", json!("inf")),
        ("NaN", json!("NaN")),
        ("", json!("")),
        (" 5", json!(" 5")),
        ("'a b'", json!("a b")),
        (r#""a\\b\"c""#, json!("a\\b\"c")),
        (r#""a"b""#, json!("\"a\"b\"")),
        (r#"'a"#, json!("'a")),
        ("\"", json!("\"")),
        ("{ 'a' : [ 1 , 2 , ] , }", json!({"a": [1, 2]})),
        (
            r#"{"a": {"b": [1.5, "x"]}}"#,
            json!({"a": {"b": [1.5, "x"]}}),
        ),
        ("['a\\\nb']", json!(["ab"])),
        (
            "[\"x\", 'y', -0x10, +3, .5, 5., 1e2]",
            json!(["x", "y", -16, 3, 0.5, 5.0, 100.0]),
        ),
        (
            "[-9223372036854775808, -0x8000000000000000]",
            json!([i64::MIN, i64::MIN]),
        ),
        ("[00, 0]", json!([0, 0])),
        ("{'a': 1, 'a': 2}", json!({"a": 2})),
    ];
    for (text, want) in ok {
        assert_eq!(parse_value(text), Ok(want), "{text:?}");
    }
    let bad = [
        ("99999999999999999999", "Invalid value: 99999999999999999999 does not fit in 64 bits"),
        ("-1e999", "Invalid value: -1e999 is out of range for a number"),
        (
            "{a}",
            "Invalid value: {a} is neither JSON nor a Python literal: expected a string key at column 2",
        ),
        (
            "['abc",
            "Invalid value: ['abc is neither JSON nor a Python literal: unterminated string at column 2",
        ),
        (
            "[1e400]",
            "Invalid value: [1e400] is neither JSON nor a Python literal: 1e400 is out of range for a number at column 2",
        ),
        (
            "['\\x4']",
            "Invalid value: ['\\x4'] is neither JSON nor a Python literal: expected 2 hexadecimal digits at column 5",
        ),
        (
            "['\\N{DASH}']",
            "Invalid value: ['\\N{DASH}'] is neither JSON nor a Python literal: \\N{...} escapes are not supported at column 3",
        ),
        (
            "['\\U00110000']",
            "Invalid value: ['\\U00110000'] is neither JSON nor a Python literal: escape for U+110000 is not a character (a lone surrogate?) at column 3",
        ),
        (
            "['\\ude00']",
            "Invalid value: ['\\ude00'] is neither JSON nor a Python literal: escape for U+DE00 is not a character (a lone surrogate?) at column 3",
        ),
        (
            "[0x]",
            "Invalid value: [0x] is neither JSON nor a Python literal: missing digits after the base prefix at column 4",
        ),
        (
            "[-]",
            "Invalid value: [-] is neither JSON nor a Python literal: expected a number at column 3",
        ),
        (
            "[1j]",
            "Invalid value: [1j] is neither JSON nor a Python literal: expected ',' or ']' at column 3",
        ),
        (
            "{'a':1 'b':2}",
            "Invalid value: {'a':1 'b':2} is neither JSON nor a Python literal: expected ',' or '}' at column 8",
        ),
        (
            "['a' 'b']",
            "Invalid value: ['a' 'b'] is neither JSON nor a Python literal: expected ',' or ']' at column 6",
        ),
        (
            "['a\nb']",
            "Invalid value: ['a\nb'] is neither JSON nor a Python literal: unterminated string at column 2",
        ),
        (
            "[é]",
            "Invalid value: [é] is neither JSON nor a Python literal: unknown name 'é' (strings need quotes) at column 2",
        ),
        (
            "[@]",
            "Invalid value: [@] is neither JSON nor a Python literal: unexpected character '@' at column 2",
        ),
    ];
    for (text, want) in bad {
        assert_eq!(
            parse_value(text).map_err(|e| e.to_string()),
            Err(want.to_owned()),
            "{text:?}"
        );
    }
}

#[test]
fn build_request_for_argv_words() {
    assert_eq!(
        Value::Object(build_request("set_password", &["protocol=vnc", "password=a b"]).unwrap()),
        json!({"execute": "set_password", "arguments": {"protocol": "vnc", "password": "a b"}})
    );
    assert_eq!(
        Value::Object(build_request("x", &[r#"a={"k": [1, 2]}"#, "b.c='q'"]).unwrap()),
        json!({"execute": "x", "arguments": {"a": {"k": [1, 2]}, "b": {"c": "q"}}})
    );
    assert_eq!(
        Value::Object(build_request("query-status", &[]).unwrap()),
        json!({"execute": "query-status", "arguments": {}})
    );
    assert_eq!(
        build_request("", &["a=1"]).unwrap_err().to_string(),
        "Missing command name"
    );
    assert_eq!(
        build_request("x", &["a=1", "nope"])
            .unwrap_err()
            .to_string(),
        "Expected a key=value pair, got 'nope'"
    );
    assert_eq!(
        build_request("x", &["a={'k': x}"]).unwrap_err().to_string(),
        "Invalid value for \"a\": {'k': x} is neither JSON nor a Python literal: \
         unknown name 'x' (strings need quotes) at column 7"
    );
}

#[test]
fn hmp_requests() {
    assert_eq!(
        Value::Object(hmp_request("info block")),
        json!({"execute": "human-monitor-command", "arguments": {"command-line": "info block"}})
    );
    assert_eq!(
        Value::Object(hmp_request_on_cpu("info registers", 1)),
        json!({"execute": "human-monitor-command",
               "arguments": {"command-line": "info registers", "cpu-index": 1}})
    );
}

#[test]
fn split_words_like_the_reference() {
    assert_eq!(split_words("").unwrap(), Vec::<&str>::new());
    assert_eq!(split_words("  a  b\tc ").unwrap(), ["a", "b", "c"]);
    assert_eq!(
        split_words(r#"x a="b c" 'd e'f g\ h"#).unwrap(),
        ["x", r#"a="b c""#, "'d e'f", "g\\", "h"]
    );
    assert_eq!(
        split_words(r#"x a="b\" c""#).unwrap(),
        ["x", r#"a="b\" c""#]
    );
    assert_eq!(
        split_words("x a='b").unwrap_err().to_string(),
        "Missing closing ' quote in: a='b"
    );
}

#[test]
fn syntax_error_is_a_plain_error_value() {
    let error = parse_value("[x]").unwrap_err();
    let copy = error.clone();
    assert_eq!(error, copy);
    assert_eq!(error.message(), error.to_string());
    let boxed: Box<dyn std::error::Error> = Box::new(error);
    assert!(boxed.to_string().starts_with("Invalid value: [x]"));
}

// --- Completion ------------------------------------------------------------------------

fn arg(start: usize, command: &str, path: &[&str], prefix: &str) -> Completion {
    Completion::Argument {
        start,
        command: command.to_owned(),
        path: path.iter().map(|s| (*s).to_owned()).collect(),
        prefix: prefix.to_owned(),
    }
}

fn val(start: usize, command: &str, key: &[&str], prefix: &str) -> Completion {
    Completion::Value {
        start,
        command: command.to_owned(),
        key: key.iter().map(|s| (*s).to_owned()).collect(),
        prefix: prefix.to_owned(),
    }
}

fn command(start: usize, prefix: &str) -> Completion {
    Completion::Command {
        start,
        prefix: prefix.to_owned(),
    }
}

fn action(start: usize, prefix: &str) -> Completion {
    Completion::ActionType {
        start,
        prefix: prefix.to_owned(),
    }
}

/// `(line, cursor (None: at the end), inside a transaction, expected)`.
fn completion_cases() -> Vec<(&'static str, Option<usize>, bool, Completion)> {
    let bda = "transaction( block-dirty-bitmap-add no";
    vec![
        ("", None, false, command(0, "")),
        ("que", None, false, command(0, "que")),
        ("  que", None, false, command(2, "que")),
        ("query-status", Some(5), false, command(0, "query")),
        ("transaction", None, false, command(0, "transaction")),
        ("device_add ", None, false, arg(11, "device_add", &[], "")),
        (
            "device_add dri",
            None,
            false,
            arg(11, "device_add", &[], "dri"),
        ),
        (
            "device_add dri id=x",
            Some(14),
            false,
            arg(11, "device_add", &[], "dri"),
        ),
        (
            "device_add  id=x",
            Some(11),
            false,
            arg(11, "device_add", &[], ""),
        ),
        (
            "device_add driver=e1",
            None,
            false,
            val(18, "device_add", &["driver"], "e1"),
        ),
        (
            "device_add driver=",
            None,
            false,
            val(18, "device_add", &["driver"], ""),
        ),
        (
            "device_add driver=e1000 id=n",
            Some(21),
            false,
            val(18, "device_add", &["driver"], "e10"),
        ),
        (
            "blockdev-add cache.di",
            None,
            false,
            arg(19, "blockdev-add", &["cache"], "di"),
        ),
        (
            "blockdev-add file.cache.",
            None,
            false,
            arg(24, "blockdev-add", &["file", "cache"], ""),
        ),
        (
            "blockdev-add cache.direct=t",
            None,
            false,
            val(26, "blockdev-add", &["cache", "direct"], "t"),
        ),
        ("x name=a=b", None, false, val(7, "x", &["name"], "a=b")),
        ("x name=\"ab", None, false, Completion::None),
        ("x name=\"ab\"", None, false, Completion::None),
        ("x name='a b' ", None, false, arg(13, "x", &[], "")),
        ("x name='a b' i", None, false, arg(13, "x", &[], "i")),
        ("x 'na", None, false, Completion::None),
        ("x a={\"b\":", None, false, Completion::None),
        ("x a=[1,", None, false, Completion::None),
        ("{\"execute\":\"qu", None, false, Completion::None),
        ("  {", None, false, Completion::None),
        ("# com", None, false, Completion::None),
        ("héllo wö", None, false, arg(7, "héllo", &[], "wö")),
        ("transaction( ", None, false, action(13, "")),
        ("transaction( {", None, false, Completion::None),
        ("x {", None, false, Completion::None),
        ("[", None, false, Completion::None),
        (
            "transaction( block-dirty",
            None,
            false,
            action(13, "block-dirty"),
        ),
        (
            bda,
            None,
            false,
            arg(bda.len() - 2, "block-dirty-bitmap-add", &[], "no"),
        ),
        ("transaction( a x=", None, false, val(17, "a", &["x"], "")),
        ("transaction( abort ) ", None, false, Completion::None),
        ("transaction( ) ", None, false, Completion::None),
        ("transaction( )", None, false, Completion::None),
        ("", None, true, action(0, "")),
        ("block-dirty", None, true, action(0, "block-dirty")),
        (" block-dirty", None, true, action(1, "block-dirty")),
        (
            "block-dirty-bitmap-add node=d",
            None,
            true,
            val(28, "block-dirty-bitmap-add", &["node"], "d"),
        ),
        (
            "block-dirty-bitmap-add node=d na",
            None,
            true,
            arg(30, "block-dirty-bitmap-add", &[], "na"),
        ),
        (")", None, true, Completion::None),
        ("a ) ", None, true, Completion::None),
        ("transaction( x", None, true, Completion::None),
        ("{\"type\":", None, true, Completion::None),
        ("query-status", Some(13), false, Completion::None),
        ("é", Some(1), false, Completion::None),
    ]
}

#[test]
fn completion_table() {
    let mut failures = Vec::new();
    for (line, cursor, in_transaction, want) in completion_cases() {
        let cursor = cursor.unwrap_or(line.len());
        let mut parser = Parser::new();
        if in_transaction {
            parser.parse_line("transaction(").unwrap();
        }
        let got = parser.completion_context(line, cursor);
        if got != want {
            failures.push(format!(
                "{line:?} at {cursor} (transaction: {in_transaction}):\n   got {got:?}\n  want {want:?}"
            ));
        }
        if !in_transaction {
            assert_eq!(completion_context(line, cursor), got, "{line:?}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `line[start..cursor] == prefix` whenever there is something to complete.
fn check_completion_invariant(line: &str, cursor: usize, completion: &Completion) {
    let (start, prefix) = match completion {
        Completion::Command { start, prefix }
        | Completion::ActionType { start, prefix }
        | Completion::Argument { start, prefix, .. }
        | Completion::Value { start, prefix, .. } => (*start, prefix),
        Completion::None => return,
    };
    assert_eq!(
        line.get(start..cursor),
        Some(prefix.as_str()),
        "{line:?} at {cursor}: {completion:?}"
    );
}

// --- Properties over the tables --------------------------------------------------------

/// Every prefix of every line parses (or fails) without panicking, from a fresh parser and
/// from the state the case had reached; completion never panics and keeps its invariant.
#[test]
fn no_panic_on_any_prefix() {
    let mut lines: Vec<String> = completion_cases()
        .into_iter()
        .map(|(line, ..)| line.to_owned())
        .collect();
    for case in cases() {
        let mut parser = Parser::new();
        for (line, _) in &case.lines {
            for end in (0..=line.len()).filter(|end| line.is_char_boundary(*end)) {
                let prefix = &line[..end];
                let _ = Parser::new().parse_line(prefix);
                let _ = parser.clone().parse_line(prefix);
                let _ = parse_value(prefix);
                let _ = split_words(prefix);
            }
            let _ = parser.parse_line(line);
            lines.push(line.clone());
        }
    }
    for line in &lines {
        for cursor in 0..=line.len() + 1 {
            let free = completion_context(line, cursor);
            check_completion_invariant(line, cursor, &free);
            let mut parser = Parser::new();
            parser.parse_line("transaction(").unwrap();
            let inside = parser.completion_context(line, cursor);
            check_completion_invariant(line, cursor, &inside);
        }
    }
}

/// For a plain command line, `build_request` on its words gives what `parse_line` gives.
#[test]
fn build_request_agrees_with_parse_line() {
    let mut compared = 0;
    for case in cases() {
        let [(line, _)] = case.lines.as_slice() else {
            continue;
        };
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(['{', '#']) {
            continue;
        }
        let Ok(words) = split_words(line) else {
            continue;
        };
        let Some((first, args)) = words.split_first() else {
            continue;
        };
        if *first == "transaction(" || *first == ")" {
            continue;
        }
        let by_words = build_request(first, args)
            .map(|map| Some(Value::Object(map)))
            .map_err(|e| e.to_string());
        let by_line = outcome(Parser::new().parse_line(line));
        assert_eq!(by_words, by_line, "{}: {line:?}", case.name);
        compared += 1;
    }
    assert!(compared > 50, "only {compared} lines compared");
}

/// Lines made of the syntax's own pieces, in a seeded pseudo-random order, never panic the
/// parser or the completion, and a failed line never changes the parser.
#[test]
fn no_panic_on_random_lines() {
    const PIECES: &[&str] = &[
        "a",
        "b.c",
        "=",
        ".",
        "\"",
        "'",
        "\\",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "(",
        ")",
        "#",
        "0",
        "1",
        "-",
        "+",
        "e",
        "0x",
        "\\u",
        "d83d",
        "None",
        "true",
        "é",
        "\u{1F600}",
        "transaction(",
        " ) ",
        "\t",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut parser = Parser::new();
    for _ in 0..3000 {
        let len = (next() % 12) as usize;
        let line: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        let before = parser.clone();
        if parser.parse_line(&line).is_err() {
            assert_eq!(parser, before, "{line:?}");
        }
        let _ = parse_value(&line);
        for cursor in 0..=line.len() {
            check_completion_invariant(&line, cursor, &parser.completion_context(&line, cursor));
            check_completion_invariant(&line, cursor, &completion_context(&line, cursor));
        }
    }
}
