//! The C ABI end to end: the generated header compiles alone as C99 and C++17, the C and
//! C++ tests (tests/c, tests/cpp) build against the cdylib and pass on a tiny
//! from-scratch model, the library exports exactly the header's functions, and the
//! boundary holds when Rust calls the exported functions directly.
//!
//! Needs `cc`, `c++`, `nm` and `readelf` on PATH.

use std::collections::BTreeSet;
use std::ffi::{c_char, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};

use patchrec::ffi::patchrec_status_t::*;
use patchrec::ffi::*;
use patchrec::init::{init_model, InitOptions};
use patchrec::text::{ChatFormat, PromptTemplate};

/// The catalogue the C and C++ tests register; the tokenizer is trained on it.
const TITLES: [&str; 8] = [
    "Toy Story (1995)",
    "Heat (1995)",
    "Fargo (1996)",
    "Amélie (2001)",
    "The Matrix (1999)",
    "Alien (1979)",
    "Jurassic Park (1993)",
    "Groundhog Day (1993)",
];

const STRICT: [&str; 3] = ["-Wall", "-Werror", "-pedantic"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cdylib this test was built with. `cargo test` compiles the library's cdylib
/// together with the rlib the test links, into `target/<profile>/deps`, beside the test
/// executable; only `cargo build` copies it up to `target/<profile>`, where it may be stale.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("test executable has a directory");
    assert!(
        dir.join("libpatchrec.so").is_file(),
        "no libpatchrec.so beside {}: is `cdylib` still in Cargo.toml's crate-type?",
        exe.display()
    );
    dir.to_path_buf()
}

/// A tiny random model (tokenizer trained on `TITLES` and the prompt) saved under `dir`.
fn tiny_checkpoint(dir: &Path) -> PathBuf {
    let template = PromptTemplate::movielens(ChatFormat::ChatMl);
    let tiny = InitOptions::default()
        .with_vocab_size(1024)
        .with_hidden_size(64)
        .with_num_layers(2);
    let model = init_model(&TITLES, template, &tiny).expect("init model");
    let checkpoint = dir.join("checkpoint");
    model.save(&checkpoint).expect("save model");
    checkpoint
}

/// Runs `command`, prints its output, and fails the test unless it exits 0.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("$ {command:?}\n{text}");
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n{text}",
        output.status
    );
    text
}

/// The shared library's SONAME, which a program linked against it asks the loader for.
fn soname() -> String {
    format!("libpatchrec.so.{PATCHREC_ABI_VERSION}")
}

/// How a test program links the library: the cdylib, with an rpath to `dir`, where a
/// link named after the SONAME points at it, as an installation's link does
/// (`cargo test` leaves only libpatchrec.so).
fn link_shared(dir: &Path) -> Vec<String> {
    let lib = library_dir();
    let runtime = dir.join("lib");
    std::fs::create_dir_all(&runtime).expect("create lib dir");
    std::os::unix::fs::symlink(lib.join("libpatchrec.so"), runtime.join(soname()))
        .expect("link the SONAME");
    vec![
        format!("-L{}", lib.display()),
        "-lpatchrec".into(),
        format!("-Wl,-rpath,{}", runtime.display()),
    ]
}

/// Compiles `source` with `compiler` and `flags` against the header, linked with what
/// `link` returns for the test's temporary folder, runs it on a tiny checkpoint, and
/// checks it reports no failures.
fn build_and_run(
    compiler: &str,
    flags: &[&str],
    source: &str,
    link: impl FnOnce(&Path) -> Vec<String>,
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let checkpoint = tiny_checkpoint(tmp.path());
    let link = link(tmp.path());
    let exe = tmp.path().join("test_abi");
    run(Command::new(compiler)
        .args(flags)
        .args(STRICT)
        .arg(format!(
            "-DPATCHREC_EXPECTED_VERSION=\"{}\"",
            env!("CARGO_PKG_VERSION")
        ))
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join(source))
        .arg("-o")
        .arg(&exe)
        .args(&link));
    let output = run(Command::new(&exe).arg(&checkpoint));
    assert!(
        output.contains(" passed, 0 failed"),
        "no summary line:\n{output}"
    );
}

#[test]
fn header_compiles_alone_as_c99_and_cpp17() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("header_only.c");
    std::fs::write(&source, "#include \"patchrec.h\"\n").expect("write source");
    for (compiler, language, standard) in [("cc", "c", "-std=c99"), ("c++", "c++", "-std=c++17")] {
        run(Command::new(compiler)
            .args(["-x", language, standard, "-fsyntax-only"])
            .args(STRICT)
            .arg("-I")
            .arg(repo().join("include"))
            .arg(&source));
    }
}

#[test]
fn c_test_passes() {
    build_and_run("cc", &["-std=c99"], "tests/c/test_abi.c", link_shared);
}

#[test]
fn cpp_test_passes() {
    build_and_run(
        "c++",
        &["-std=c++17"],
        "tests/cpp/test_abi.cpp",
        link_shared,
    );
}

/// The static library with the system libraries that `patchrec.pc` lists for it, so the
/// installed pkg-config file is checked too.
#[test]
fn c_test_passes_linked_statically() {
    let pc = std::fs::read_to_string(repo().join("patchrec.pc.in")).expect("read patchrec.pc.in");
    let private = pc
        .lines()
        .find_map(|line| line.strip_prefix("Libs.private:"))
        .expect("patchrec.pc.in has Libs.private");
    let mut link = vec![library_dir().join("libpatchrec.a").display().to_string()];
    link.extend(private.split_whitespace().map(String::from));
    build_and_run("cc", &["-std=c99"], "tests/c/test_abi.c", |_| link);
}

/// Programs linked against the cdylib ask for libpatchrec.so.<ABI version> (build.rs),
/// so a library of another ABI version is never loaded in its place.
#[test]
fn shared_library_is_named_after_the_abi_version() {
    let dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(library_dir().join("libpatchrec.so")));
    let sonames: Vec<&str> = dynamic
        .lines()
        .filter(|line| line.contains("(SONAME)"))
        .collect();
    assert_eq!(sonames.len(), 1, "one SONAME entry:\n{dynamic}");
    assert!(
        sonames[0].ends_with(&format!("[{}]", soname())),
        "{}",
        sonames[0]
    );
}

/// The lines of the header that start a function declaration (not a comment, directive
/// or continuation), each with the line before it: cbindgen puts the export macro of a
/// declaration that spans several lines on a line of its own.
fn header_declarations(header: &str) -> Vec<(&str, &str)> {
    let lines: Vec<&str> = header.lines().collect();
    (1..lines.len())
        .map(|i| (lines[i - 1], lines[i]))
        .filter(|(_, line)| {
            line.starts_with(|c: char| c.is_ascii_alphabetic()) && line.contains('(')
        })
        .filter(|(_, line)| !line.starts_with("typedef") && !line.starts_with("extern"))
        .collect()
}

/// Function names declared in the header: the identifier before `(` on each line that
/// starts a declaration.
fn header_functions(header: &str) -> BTreeSet<String> {
    header_declarations(header)
        .into_iter()
        .map(|(_, line)| {
            let before = &line[..line.find('(').expect("has '('")];
            before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .expect("a name")
                .to_string()
        })
        .collect()
}

#[test]
fn library_exports_exactly_the_header_functions() {
    let header = std::fs::read_to_string(repo().join("include/patchrec.h")).expect("read header");
    let declared = header_functions(&header);
    let symbols = run(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library_dir().join("libpatchrec.so")));
    let exported: BTreeSet<String> = symbols
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [_, "T", name] => Some(name.to_string()),
                _ => None,
            },
        )
        .collect();
    assert!(
        declared.len() > 30,
        "parsed too few declarations: {declared:?}"
    );
    assert_eq!(
        exported, declared,
        "exported functions differ from the header's"
    );
}

/// Without the macro a caller's `-fvisibility=hidden` or a Windows DLL import breaks.
#[test]
fn every_function_is_declared_with_the_export_macro() {
    let header = std::fs::read_to_string(repo().join("include/patchrec.h")).expect("read header");
    let declarations = header_declarations(&header);
    assert!(declarations.len() > 30, "parsed too few declarations");
    let bare: Vec<&str> = declarations
        .into_iter()
        .filter(|(before, line)| !(line.starts_with("PATCHREC_API ") || *before == "PATCHREC_API"))
        .map(|(_, line)| line)
        .collect();
    assert!(bare.is_empty(), "declared without PATCHREC_API: {bare:?}");
}

#[test]
fn header_names_only_patchrec_items() {
    let header = std::fs::read_to_string(repo().join("include/patchrec.h")).expect("read header");
    let mut names: Vec<String> = header_functions(&header).into_iter().collect();
    let mut in_enum = false;
    for line in header.lines() {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        let name = if line.starts_with("#define") {
            words.get(1)
        } else if let Some(at) = line.find("(*").filter(|_| line.starts_with("typedef")) {
            // A function pointer type: `typedef R (*name)(args...`.
            let rest = &line[at + 2..];
            names.push(rest[..rest.find(')').unwrap_or(rest.len())].to_string());
            None
        } else if line.starts_with("typedef") || (line.starts_with("} ") && line.ends_with(';')) {
            words.last()
        } else if line.starts_with("enum ") {
            in_enum = true;
            words.get(1)
        } else if in_enum
            && line
                .trim_start()
                .starts_with(|c: char| c.is_ascii_uppercase())
        {
            words.first()
        } else {
            None
        };
        names.extend(name.map(|n| n.to_string()));
        in_enum &= !line.starts_with("};");
    }
    assert!(names.len() > 50, "parsed too few names: {names:?}");
    let foreign: Vec<&String> = names
        .iter()
        .filter(|n| !(n.starts_with("patchrec_") || n.starts_with("PATCHREC_")))
        .collect();
    assert!(
        foreign.is_empty(),
        "non-patchrec names in the header: {foreign:?}"
    );
}

unsafe fn take_error(error: *mut patchrec_error_t) -> (patchrec_status_t, String) {
    assert!(!error.is_null(), "a failure must fill the error out-param");
    let status = patchrec_error_status(error);
    let message = CStr::from_ptr(patchrec_error_message(error))
        .to_string_lossy()
        .into_owned();
    patchrec_error_free(error);
    (status, message)
}

fn name(status: patchrec_status_t) -> &'static str {
    unsafe { CStr::from_ptr(patchrec_status_name(status as u32)) }
        .to_str()
        .expect("names are ASCII")
}

#[test]
fn exported_functions_turn_bad_arguments_into_statuses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let checkpoint = tiny_checkpoint(tmp.path());
    let checkpoint = std::ffi::CString::new(checkpoint.to_str().expect("UTF-8 temp path")).unwrap();
    unsafe {
        let mut error = null_mut();
        let status = patchrec_catalog_add(null(), 1, c"Heat (1995)".as_ptr(), &mut error);
        assert_eq!(status, PATCHREC_NULL_ARGUMENT);
        let (status, message) = take_error(error);
        assert_eq!(status, PATCHREC_NULL_ARGUMENT);
        assert!(message.contains("`catalog`"), "{message}");

        let mut model = null_mut();
        let status = patchrec_model_load(checkpoint.as_ptr(), null(), &mut model, &mut error);
        assert_eq!(status, PATCHREC_OK, "{}", take_error(error).1);
        assert!(error.is_null());
        let mut catalog = null_mut();
        assert_eq!(
            patchrec_catalog_new(model, &mut catalog, null_mut()),
            PATCHREC_OK
        );
        patchrec_model_free(model);

        let invalid: &[u8] = b"Caf\xe9 (1999)\0";
        let status =
            patchrec_catalog_add(catalog, 1, invalid.as_ptr().cast::<c_char>(), &mut error);
        let (_, message) = take_error(error);
        assert_eq!(
            (name(status), message.contains("`title`")),
            ("PATCHREC_INVALID_UTF8", true)
        );

        let titles = [c"Heat (1995)".as_ptr(), null()];
        let status =
            patchrec_catalog_add_batch(catalog, [1, 2].as_ptr(), titles.as_ptr(), 2, &mut error);
        let (_, message) = take_error(error);
        assert_eq!(status, PATCHREC_NULL_ARGUMENT);
        assert!(message.contains("`titles[1]`"), "{message}");
        assert_eq!(patchrec_catalog_len(catalog), 0, "all or nothing");

        let mut len = 0;
        let status = patchrec_recommend(
            catalog,
            null_mut(),
            null(),
            null_mut(),
            0,
            &mut len,
            &mut error,
        );
        assert_eq!(
            (status, take_error(error).0),
            (PATCHREC_NULL_ARGUMENT, PATCHREC_NULL_ARGUMENT)
        );

        let options = patchrec_query_options_new();
        let status = patchrec_query_options_set_layout(options, u32::MAX, 1, &mut error);
        let (_, message) = take_error(error);
        assert_eq!(status, PATCHREC_INVALID_ARGUMENT);
        assert!(message.contains("layout kind"), "{message}");
        patchrec_query_options_free(options);
        patchrec_catalog_free(catalog);
    }
}

#[test]
fn versions_match_the_crate() {
    let version = unsafe { CStr::from_ptr(patchrec_version()) };
    assert_eq!(version.to_str(), Ok(patchrec::VERSION));
    assert_eq!(patchrec::VERSION, env!("CARGO_PKG_VERSION"));
    assert_eq!(patchrec_abi_version(), PATCHREC_ABI_VERSION);
    let parts =
        format!("{PATCHREC_VERSION_MAJOR}.{PATCHREC_VERSION_MINOR}.{PATCHREC_VERSION_PATCH}");
    // A pre-release or build suffix (`-rc.1`, `+build`) is not in the numeric parts.
    assert_eq!(
        version.to_str().map(|v| v.split(['-', '+']).next()),
        Ok(Some(parts.as_str())),
        "PATCHREC_VERSION_MAJOR/MINOR/PATCH against patchrec_version()"
    );
    assert_eq!(name(PATCHREC_PANIC), "PATCHREC_PANIC");
}

#[test]
fn c_training_stops_from_its_callback_and_resumes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let items: Vec<(u64, String)> = TITLES
        .iter()
        .enumerate()
        .map(|(i, t)| (i as u64 + 1, t.to_string()))
        .collect();
    patchrec::data::synthetic::write_synthetic(&data, &items, 6, 8, 0.2, 1).expect("dataset");
    let exe = tmp.path().join("test_train");
    run(Command::new("cc")
        .args(["-std=c99"])
        .args(STRICT)
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("tests/c/test_train.c"))
        .arg("-o")
        .arg(&exe)
        .args(link_shared(tmp.path())));
    let output = run(Command::new(&exe).arg(&data).arg(tmp.path().join("run")));
    assert!(output.contains(" passed, 0 failed"), "{output}");
}
