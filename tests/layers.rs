//! The crate's layers, as `src/lib.rs` draws them: each top-level module uses only the modules below it.
//!
//! Every `crate::…` path in `src/` (in `use` items, types and expressions, tests included) is read with
//! `syn` and checked against the diagram. A new arrow upward, or between the three roles, fails here with
//! the file and the path.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;

/// What each top-level module may use (besides itself). Read top to bottom as the diagram in `lib.rs`.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    const ROLE: &[&str] = &["api", "engine", "state", "runtime"];
    BTreeMap::from([
        ("main", &["cmd", "runtime"][..]),
        ("cmd", &["devtools", "webhook", "reconciler", "extender", "state", "engine", "api", "runtime"][..]),
        ("devtools", &["webhook", "reconciler", "extender", "state", "engine", "api", "runtime"][..]),
        ("vectors", &["reconciler", "engine", "api", "runtime"][..]),
        ("webhook", ROLE),
        ("reconciler", ROLE),
        ("extender", ROLE),
        ("state", &["engine", "api", "runtime"][..]),
        ("engine", &["api"][..]),
        ("api", &[][..]),
        ("runtime", &[][..]),
    ])
}

/// The top-level module of a file under `src/`.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules named right after `crate::` anywhere in a file.
#[derive(Default)]
struct CrateRefs(BTreeSet<String>);

impl CrateRefs {
    fn use_tree(&mut self, tree: &syn::UseTree, at_crate: bool) {
        match tree {
            syn::UseTree::Path(p) if p.ident == "crate" => self.use_tree(&p.tree, true),
            syn::UseTree::Path(p) if at_crate => {
                self.0.insert(p.ident.to_string());
            }
            syn::UseTree::Name(n) if at_crate => {
                self.0.insert(n.ident.to_string());
            }
            syn::UseTree::Rename(r) if at_crate => {
                self.0.insert(r.ident.to_string());
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(t, at_crate)),
            _ => {}
        }
    }
}

impl<'ast> Visit<'ast> for CrateRefs {
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&u.tree, false);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next())
            && first.ident == "crate"
        {
            self.0.insert(second.ident.to_string());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (`matches!`, `assert!`) are tokens: read them as an expression list.
        if let Ok(args) =
            m.parse_body_with(syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
        {
            args.iter().for_each(|e| self.visit_expr(e));
        }
        syn::visit::visit_macro(self, m);
    }
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let allowed = allowed();
    let mut broken = Vec::new();
    for file in &files {
        let layer = layer_of(&src, file);
        if layer == "lib" {
            continue;
        }
        let Some(may_use) = allowed.get(layer.as_str()) else {
            broken.push(format!("{}: module {layer} is not in the diagram", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("readable");
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut refs = CrateRefs::default();
        refs.visit_file(&ast);
        for used in refs.0 {
            if used != layer && !may_use.contains(&used.as_str()) {
                broken.push(format!("{}: {layer} uses crate::{used}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "imports against the layers of src/lib.rs:\n{}", broken.join("\n"));
}

#[test]
fn every_top_level_module_is_in_the_diagram() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).expect("lib.rs");
    let ast = syn::parse_file(&lib).expect("lib.rs parses");
    let allowed = allowed();
    for item in ast.items {
        if let syn::Item::Mod(m) = item {
            assert!(
                allowed.contains_key(m.ident.to_string().as_str()),
                "module {} is not in the diagram",
                m.ident
            );
        }
    }
}

#[test]
fn the_checker_sees_a_grouped_import_and_a_path_in_an_expression() {
    let ast = syn::parse_file(
        "use crate::{api::Wpa, state::{self, caches::Caches}};\nfn f() { let _ = crate::webhook::edge(); assert!(matches!(x, crate::extender::Mode::On)); }",
    )
    .expect("parses");
    let mut refs = CrateRefs::default();
    refs.visit_file(&ast);
    assert_eq!(refs.0.into_iter().collect::<Vec<_>>(), ["api", "extender", "state", "webhook"]);
}
