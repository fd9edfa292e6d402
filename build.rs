//! Compiles `proto/*.proto` with prost-build. The vendored `protoc` is used unless the
//! `PROTOC` environment variable names another one, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let mut protos: Vec<_> = std::fs::read_dir("proto")?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    protos.sort();
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    // `bytes` fields (buffer operations, opaque editor state) are `Bytes`, so relaying one
    // message to many receivers clones a reference count, not the payload.
    prost_build::Config::new()
        .bytes(["."])
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
