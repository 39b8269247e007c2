//! The checked-in header `include/shmex.h` is what cbindgen generates from
//! the sources now: regenerate it into a temporary file, compare, and fail
//! (CI too) when it is stale. `SHMEX_BLESS=1` rewrites it instead.

use std::path::Path;

#[test]
fn header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("bindings/cbindgen.toml is readable");
    let bindings = cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let fresh = std::env::temp_dir().join(format!("shmex-{}.h", std::process::id()));
    bindings.write_to_file(&fresh);
    let generated = std::fs::read_to_string(&fresh).expect("generated header");
    let _ = std::fs::remove_file(&fresh);
    let path = dir.join("include/shmex.h");
    if std::env::var_os("SHMEX_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("write include/shmex.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || checked_in.lines().count().min(generated.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "bindings/include/shmex.h is stale (first difference at line {line}): \
             regenerate it with `SHMEX_BLESS=1 cargo test -p shmex-c --test header` \
             and commit it"
        );
    }
}
