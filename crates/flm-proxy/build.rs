//! The app (`ui/dist`, built by `npm run build` in `ui/`) is embedded with rust-embed.
//! The folder is created empty when missing so that `cargo build` works without Node;
//! the server then answers `/` with a page that says how to build the app.

fn main() {
    let dist = std::path::Path::new("../../ui/dist");
    if !dist.exists() {
        if let Err(e) = std::fs::create_dir_all(dist) {
            println!("cargo:warning=cannot create ui/dist: {e}");
        }
    }
    println!("cargo:rerun-if-changed=../../ui/dist");
    println!("cargo:rerun-if-changed=build.rs");
}
