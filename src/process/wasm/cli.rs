//! The `sluice transform test` and `sluice transform new` commands: the plugin author's
//! loop outside a running stream (argument types derive clap, so `main.rs` adds one
//! variant).
//!
//! Neighbours: `test` drives the host in the parent module ([`TransformHost`]) exactly
//! as a stream will, minus retries and the disk cache: one [`TransformHost::call`] on
//! the whole input, so an invocation failure is shown instead of being turned into
//! `processing-failed` records by [`TransformHost::call_with_retries`]. `new` writes a
//! project from the templates in `transforms/templates/` and the contract
//! `transforms/wit/transform.wit`, both compiled into the binary, so the scaffold always
//! carries the WIT this binary's host speaks.
//!
//! `test` reads one record per input line (the bytes without the `\n`; an empty line
//! is an empty record, so the ids `0`, `1`, ... are the lines' 0-based numbers) and
//! prints one JSON object per record, in input order, shaped after Firehose's Lambda
//! response:
//!
//! ```text
//! {"recordId":"0","result":"Ok","data":"{\"a\":1}","metadata":{"partitionKeys":{"k":"v"}}}
//! {"recordId":"1","result":"Ok","dataBase64":"/wA="}
//! {"recordId":"2","result":"Dropped"}
//! {"recordId":"3","result":"ProcessingFailed","errorCode":"Lambda.ProcessingFailed","errorMessage":"..."}
//! ```
//!
//! `data` is the new record as text when it is UTF-8, else `dataBase64` (Firehose's
//! response always base64-encodes `data`; text is what a person wants to read here).
//! `metadata.partitionKeys` is present when the module returned keys.
//!
//! Exit codes: 0 when the call succeeded, whatever each record's result; 1 when it
//! failed as a whole (trap, deadline, memory, `init` refused the `--config`, a missing,
//! duplicated or unknown record id), with the error and its `Lambda.*` code on stderr;
//! 2 for usage errors: a module that cannot be read or is not a `transformer`
//! component, an unreadable input, a bad `--config`, an existing `new` target.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

use super::{BatchContext, Limits, Outcome, Record, TransformError, TransformHost};

/// The ARN `transform test` passes as the delivery stream's.
pub const TEST_STREAM_ARN: &str =
    "arn:aws:firehose:us-east-1:000000000000:deliverystream/transform-test";
/// The region `transform test` passes.
pub const TEST_REGION: &str = "us-east-1";

/// `sluice transform` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TransformCommand {
    /// Run a WASM transform once on sample records (one per line) and print each
    /// record's result as a JSON line; exit 1 when the call fails as a whole.
    Test(TestArgs),
    /// Create a transform plugin project (Rust, Python or JavaScript) that builds and
    /// passes its own tests as it is.
    New(NewArgs),
}

/// Arguments of `sluice transform test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The component (.wasm) to run.
    #[arg(long, value_name = "M.wasm")]
    pub module: PathBuf,
    /// Records, one per line (an empty line is an empty record); `-` or absent reads
    /// stdin.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// An option passed to the module's `init`, `KEY=VALUE`; repeatable, in order.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub config: Vec<(String, String)>,
    /// Wall-clock seconds the call (and `init`) may take.
    #[arg(long, value_name = "N", default_value_t = 60)]
    pub deadline_secs: u64,
    /// Largest linear memory of the instance, in MiB.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub memory_mib: usize,
}

/// Arguments of `sluice transform new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's language.
    #[arg(long, value_enum)]
    pub lang: Lang,
    /// The project's name: its directory, crate or package name and `NAME.wasm`
    /// (lowercase letters, digits, `-` and `_`, starting with a letter).
    pub name: String,
    /// Where to create the NAME directory.
    #[arg(long, value_name = "PARENT", default_value = ".")]
    pub dir: PathBuf,
}

/// A plugin language `transform new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with wit-bindgen 0.63 (`cargo build --target wasm32-wasip2`).
    Rust,
    /// Python with componentize-py 0.25.1.
    Python,
    /// JavaScript with componentize-js 0.23.0.
    Js,
}

/// Why a `sluice transform` command stops.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An argument, the input or the target directory cannot be used.
    #[error("{0}")]
    Usage(String),
    /// The module could not be loaded (unreadable, not a `transformer` component).
    /// No `Lambda.*` code: nothing was invoked.
    #[error("{0}")]
    Load(TransformError),
    /// The call failed as a whole.
    #[error("{0} [{code}]", code = .0.code())]
    Invocation(TransformError),
    /// Writing the scaffold or the output failed.
    #[error("{0}")]
    Io(String),
}

impl CliError {
    /// The process exit code: 2 for what the invocation got wrong, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Load(_) => 2,
            CliError::Invocation(_) | CliError::Io(_) => 1,
        }
    }
}

/// `KEY=VALUE` (the value may hold `=`; the key must not be empty).
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Runs a `sluice transform` subcommand; returns the exit code.
pub fn run(command: &TransformCommand) -> u8 {
    let result = match command {
        TransformCommand::Test(args) => test(args),
        TransformCommand::New(args) => new(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The records of `input`: one per line, the line's bytes without its `\n`. A final
/// line without a newline is a record; the empty piece after a final newline is not.
pub fn split_records(input: &[u8]) -> Vec<&[u8]> {
    if input.is_empty() {
        return Vec::new();
    }
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    input.split(|&b| b == b'\n').collect()
}

/// The batch `test` passes (ids `0`, `1`, ...), all arriving at `arrival_ms`.
pub fn batch(lines: &[&[u8]], arrival_ms: i64) -> Vec<Record> {
    lines
        .iter()
        .map(|line| Record {
            arrival_ms,
            data: Bytes::copy_from_slice(line),
            kinesis: None,
        })
        .collect()
}

/// One output line of `test`; field order is print order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Line<'a> {
    record_id: &'a str,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    partition_keys: BTreeMap<&'a str, &'a str>,
}

/// The JSON line for one record's outcome, and a note when the module gave a
/// partition key twice (the line can show only the last value).
pub fn render_line(id: &str, outcome: &Outcome) -> (String, Option<String>) {
    let mut note = None;
    let line = match outcome {
        Outcome::Ok {
            data,
            partition_keys,
        } => {
            let text = std::str::from_utf8(data).ok();
            let mut keys = BTreeMap::new();
            for (k, v) in partition_keys {
                if keys.insert(k.as_str(), v.as_str()).is_some() {
                    note = Some(format!(
                        "record {id}: partition key {k:?} given more than once; the last value is shown"
                    ));
                }
            }
            Line {
                record_id: id,
                result: "Ok",
                data: text,
                data_base64: match text {
                    Some(_) => None,
                    None => Some(base64::engine::general_purpose::STANDARD.encode(data)),
                },
                metadata: (!keys.is_empty()).then_some(Metadata {
                    partition_keys: keys,
                }),
                error_code: None,
                error_message: None,
            }
        }
        Outcome::Dropped => Line {
            record_id: id,
            result: "Dropped",
            data: None,
            data_base64: None,
            metadata: None,
            error_code: None,
            error_message: None,
        },
        Outcome::Failed(failure) => Line {
            record_id: id,
            result: "ProcessingFailed",
            data: None,
            data_base64: None,
            metadata: None,
            error_code: Some(failure.code),
            error_message: Some(&failure.message),
        },
    };
    // A struct of strings and maps of strings always serializes.
    let json = serde_json::to_string(&line).unwrap_or_default();
    (json, note)
}

fn read_input(input: Option<&Path>) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    match input {
        None => read_stdin(&mut buf)?,
        Some(p) if p == Path::new("-") => read_stdin(&mut buf)?,
        Some(p) => {
            buf = std::fs::read(p)
                .map_err(|e| CliError::Usage(format!("cannot read --input {}: {e}", p.display())))?
        }
    }
    Ok(buf)
}

fn read_stdin(buf: &mut Vec<u8>) -> Result<(), CliError> {
    let mut stdin = std::io::stdin().lock();
    if std::io::IsTerminal::is_terminal(&stdin) {
        eprintln!("reading records from stdin, one per line; end with Ctrl-D");
    }
    stdin
        .read_to_end(buf)
        .map(drop)
        .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))
}

/// `sluice transform test`.
fn test(args: &TestArgs) -> Result<(), CliError> {
    if args.deadline_secs == 0 || args.memory_mib == 0 {
        return Err(CliError::Usage(
            "--deadline-secs and --memory-mib must be at least 1".into(),
        ));
    }
    let memory_bytes = args
        .memory_mib
        .checked_mul(1 << 20)
        .ok_or_else(|| CliError::Usage(format!("--memory-mib {} is too large", args.memory_mib)))?;
    // Input first: a wrong path should not wait for a multi-second compile.
    let input = read_input(args.input.as_deref())?;
    let lines = split_records(&input);
    if lines.is_empty() {
        return Err(CliError::Usage(
            "no records: the input is empty (one record per line)".into(),
        ));
    }
    let limits = Limits {
        deadline: Duration::from_secs(args.deadline_secs),
        memory_bytes,
        instances: 1,
        ..Limits::default()
    };
    let started = Instant::now();
    let host =
        TransformHost::load_file(&args.module, None, args.config.clone(), limits).map_err(|e| {
            match e {
                TransformError::Read { .. }
                | TransformError::Compile { .. }
                | TransformError::Instantiate { .. } => CliError::Load(e),
                other => CliError::Invocation(other),
            }
        })?;
    let load_time = started.elapsed();
    let arrival_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let records = batch(&lines, arrival_ms);
    let ctx = BatchContext {
        invocation_id: uuid::Uuid::new_v4().to_string(),
        delivery_stream_arn: TEST_STREAM_ARN.into(),
        region: TEST_REGION.into(),
        source_kinesis_stream_arn: None,
    };
    let started = Instant::now();
    // `call`, not `call_with_retries`: the point is to see the failure.
    let outcomes = host.call(&ctx, &records).map_err(CliError::Invocation)?;
    let call_time = started.elapsed();

    let mut out = std::io::stdout().lock();
    let (mut ok, mut dropped, mut failed) = (0, 0, 0);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Outcome::Ok { .. } => ok += 1,
            Outcome::Dropped => dropped += 1,
            Outcome::Failed(_) => failed += 1,
        }
        let (line, note) = render_line(&i.to_string(), outcome);
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
        writeln!(out, "{line}").map_err(|e| CliError::Io(format!("writing stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| CliError::Io(format!("writing stdout: {e}")))?;
    eprintln!(
        "{}: {} records: {ok} Ok, {dropped} Dropped, {failed} ProcessingFailed (load {} ms, call {} ms)",
        host.name(),
        records.len(),
        load_time.as_millis(),
        call_time.as_millis()
    );
    Ok(())
}

/// The contract every scaffold carries, as this binary's host speaks it.
const WIT: &str = include_str!("../../../transforms/wit/transform.wit");

/// One file of a template: its path in the project, its text (with `{{name}}` and
/// `{{crate_file}}` placeholders), and whether it is a script to mark executable.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    executable: bool,
}

macro_rules! template {
    ($lang:literal, $path:literal, $src:literal, $exec:expr) => {
        TemplateFile {
            path: $path,
            text: include_str!(concat!("../../../transforms/templates/", $lang, "/", $src)),
            executable: $exec,
        }
    };
}

const RUST_FILES: &[TemplateFile] = &[
    template!("rust", "Cargo.toml", "Cargo.toml", false),
    template!("rust", "src/lib.rs", "src/lib.rs", false),
    template!("rust", "build.sh", "build.sh", true),
    template!("rust", "README.md", "README.md", false),
    template!("rust", ".gitignore", "gitignore", false),
];

const PYTHON_FILES: &[TemplateFile] = &[
    template!("python", "src/app.py", "src/app.py", false),
    template!("python", "src/logic.py", "src/logic.py", false),
    template!("python", "src/test_logic.py", "src/test_logic.py", false),
    template!("python", "build.sh", "build.sh", true),
    template!("python", "README.md", "README.md", false),
    template!("python", ".gitignore", "gitignore", false),
];

const JS_FILES: &[TemplateFile] = &[
    template!("js", "package.json", "package.json", false),
    template!("js", "src/component.js", "src/component.js", false),
    template!("js", "src/logic.js", "src/logic.js", false),
    template!("js", "test/logic.test.js", "test/logic.test.js", false),
    template!("js", "build.sh", "build.sh", true),
    template!("js", "README.md", "README.md", false),
    template!("js", ".gitignore", "gitignore", false),
];

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Lang::Rust => RUST_FILES,
            Lang::Python => PYTHON_FILES,
            Lang::Js => JS_FILES,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// What to run after `new`, one command a line, in the project directory.
    fn next_steps(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &[
                "rustup target add wasm32-wasip2    # once",
                "./build.sh    # cargo test; cargo build --release --target wasm32-wasip2",
            ],
            Lang::Python => &[
                "pip install componentize-py==0.25.1    # once",
                "./build.sh    # python3 -m unittest; componentize-py ... componentize",
            ],
            Lang::Js => &[
                "npm install    # once: componentize-js 0.23.0",
                "./build.sh    # node --test; componentize-js ...",
            ],
        }
    }
}

/// Checks a project name: it becomes a directory, a Rust crate or npm package name
/// and a file name, so only what is valid for all of them.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(format!(
            "name {name:?}: use lowercase letters, digits, - and _, starting with a letter (at most 64)"
        ));
    }
    // Names cargo refuses for a package (they shadow the standard crates).
    if ["std", "core", "alloc", "test", "proc_macro", "proc-macro"].contains(&name) {
        return Err(format!("name {name:?} is reserved by Rust; choose another"));
    }
    Ok(())
}

/// A template's text with the project's name in.
pub fn render_template(text: &str, name: &str) -> String {
    text.replace("{{crate_file}}", &name.replace('-', "_"))
        .replace("{{name}}", name)
}

/// The files of a new `lang` project called `name`: (path, text, executable).
pub fn scaffold(lang: Lang, name: &str) -> Vec<(&'static str, String, bool)> {
    let mut files: Vec<(&'static str, String, bool)> = lang
        .files()
        .iter()
        .map(|f| (f.path, render_template(f.text, name), f.executable))
        .collect();
    files.push(("wit/transform.wit", WIT.to_string(), false));
    files
}

/// `sluice transform new`.
fn new(args: &NewArgs) -> Result<(), CliError> {
    check_name(&args.name).map_err(CliError::Usage)?;
    let root = args.dir.join(&args.name);
    if root.symlink_metadata().is_ok() {
        return Err(CliError::Usage(format!(
            "{} already exists; choose another name or --dir",
            root.display()
        )));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", args.dir.display())))?;
    // create_dir, not create_dir_all: if the directory appeared since the check above,
    // this fails instead of writing into someone's files.
    std::fs::create_dir(&root)
        .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", root.display())))?;
    let files = scaffold(args.lang, &args.name);
    for (path, text, executable) in &files {
        write_file(&root.join(path), text, *executable)
            .map_err(|e| CliError::Io(format!("writing {}: {e}", root.join(path).display())))?;
    }
    let mut out = String::new();
    out.push_str(&format!(
        "Created the {} transform `{}` in {}:\n",
        args.lang.label(),
        args.name,
        root.display()
    ));
    for (path, _, _) in &files {
        out.push_str(&format!("  {path}\n"));
    }
    out.push_str("\nNext:\n");
    out.push_str(&format!("  cd {}\n", root.display()));
    for step in args.lang.next_steps() {
        out.push_str(&format!("  {step}\n"));
    }
    out.push_str(&format!(
        "  printf '%s\\n' '{{\"a\":1}}' '' 'not json' | sluice transform test --module {}.wasm\n",
        args.name
    ));
    print!("{out}");
    Ok(())
}

fn write_file(path: &Path, text: &str, executable: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Failure;

    #[test]
    fn one_record_per_line_without_the_newline() {
        assert!(split_records(b"").is_empty());
        assert_eq!(split_records(b"a"), vec![b"a".as_slice()]);
        assert_eq!(split_records(b"a\n"), vec![b"a".as_slice()]);
        // Empty lines are empty records; a \r stays (only the \n ends a line).
        assert_eq!(
            split_records(b"a\n\nb\r\n"),
            vec![b"a".as_slice(), b"", b"b\r"]
        );
        assert_eq!(split_records(b"\n"), vec![b"".as_slice()]);
        let records = batch(&split_records(b"x\ny"), 7);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].data, Bytes::from_static(b"y"));
        assert!(
            records
                .iter()
                .all(|r| r.arrival_ms == 7 && r.kinesis.is_none())
        );
    }

    #[test]
    fn lines_follow_the_lambda_response() {
        let ok = Outcome::Ok {
            data: Bytes::from_static(b"{\"a\":1}"),
            partition_keys: vec![("z".into(), "1".into()), ("a".into(), "2".into())],
        };
        assert_eq!(
            render_line("0", &ok),
            (
                r#"{"recordId":"0","result":"Ok","data":"{\"a\":1}","metadata":{"partitionKeys":{"a":"2","z":"1"}}}"#.to_string(),
                None
            )
        );
        let binary = Outcome::Ok {
            data: Bytes::from_static(&[0xff, 0]),
            partition_keys: vec![],
        };
        assert_eq!(
            render_line("1", &binary).0,
            r#"{"recordId":"1","result":"Ok","dataBase64":"/wA="}"#
        );
        let empty = Outcome::Ok {
            data: Bytes::new(),
            partition_keys: vec![],
        };
        assert_eq!(
            render_line("2", &empty).0,
            r#"{"recordId":"2","result":"Ok","data":""}"#
        );
        assert_eq!(
            render_line("3", &Outcome::Dropped).0,
            r#"{"recordId":"3","result":"Dropped"}"#
        );
        let failed = Outcome::Failed(Failure::new("Lambda.ProcessingFailed", "not \"JSON\""));
        assert_eq!(
            render_line("4", &failed).0,
            r#"{"recordId":"4","result":"ProcessingFailed","errorCode":"Lambda.ProcessingFailed","errorMessage":"not \"JSON\""}"#
        );
    }

    #[test]
    fn a_repeated_partition_key_is_noted() {
        let ok = Outcome::Ok {
            data: Bytes::from_static(b"x"),
            partition_keys: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
        };
        let (line, note) = render_line("5", &ok);
        assert!(line.contains(r#""partitionKeys":{"k":"2"}"#), "{line}");
        assert!(note.is_some_and(|n| n.contains("\"k\"")));
    }

    #[test]
    fn config_pairs() {
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_pair("a="), Ok(("a".into(), String::new())));
        assert!(parse_pair("=b").is_err());
        assert!(parse_pair("ab").is_err());
    }

    #[test]
    fn names() {
        for good in ["t", "my-transform", "a_1"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1a",
            "-a",
            "My",
            "a b",
            "a/b",
            "..",
            "a.b",
            "test",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scaffolds_fill_in_the_name_and_carry_the_contract() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = scaffold(lang, "my-t");
            for (path, text, _) in &files {
                assert!(!text.contains("{{"), "{lang:?} {path}: placeholder left");
            }
            let wit = files.iter().find(|f| f.0 == "wit/transform.wit").unwrap();
            assert_eq!(wit.1, WIT);
            assert!(files.iter().any(|f| f.0 == "build.sh" && f.2));
            assert!(files.iter().any(|f| f.0 == "README.md"));
        }
        let rust = scaffold(Lang::Rust, "my-t");
        let build = &rust.iter().find(|f| f.0 == "build.sh").unwrap().1;
        assert!(build.contains("release/my_t.wasm\" my-t.wasm"), "{build}");
        let cargo = &rust.iter().find(|f| f.0 == "Cargo.toml").unwrap().1;
        assert!(cargo.contains("name = \"my-t\""));
        assert!(cargo.contains("wit-bindgen = { version = \"0.63\""));
    }

    #[test]
    fn new_refuses_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let args = NewArgs {
            lang: Lang::Rust,
            name: "taken".into(),
            dir: dir.path().to_path_buf(),
        };
        let err = new(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("taken")).unwrap().count(),
            0
        );

        let args = NewArgs {
            lang: Lang::Python,
            name: "fresh".into(),
            dir: dir.path().join("parent"),
        };
        new(&args).unwrap();
        let root = dir.path().join("parent/fresh");
        assert!(root.join("src/app.py").is_file());
        assert_eq!(
            std::fs::read_to_string(root.join("wit/transform.wit")).unwrap(),
            WIT
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }
}
